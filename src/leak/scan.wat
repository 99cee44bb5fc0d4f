;; The keyword automaton and the run survey of src/leak/keywords.ts (#scanSurveying), one loop over
;; the bytes of an ASCII text, as WebAssembly: the same machine, step for step, at a fraction of
;; the JavaScript loop's cost a character (issue 22). scripts/gen-scan-wasm.mjs assembles it into
;; src/leak/scan-wasm.gen.ts; src/leak/scan-wasm.ts lays out the memory and reads the results back,
;; and test/leak/scan-wasm.test.ts holds it to the JavaScript machine on random and edge texts.
;;
;; scan(length, next, table, endFrom) reads `length` bytes at 0x10000 (every one below 0x80: the
;; caller checks; at most 256 KiB, scan-wasm.ts MAX_TEXT), with `next` the transitions (u16, a
;; state is the offset of its row) and `table` per character code its column (low byte) and run
;; class (high byte, runs.ts CLASS). It writes the state after each byte at 0x50000 (u32 each), a
;; record (state, offset) at 0x150000 for each byte after which a keyword ends (state >= endFrom),
;; and at 0x350000 a record (kind | flags << 8, start, end) for each run closed, in text order:
;; kind 0 a quoted JSON value, 1 a base64 run (flags: the union of its classes), 2 a hex run. At
;; address 0 it leaves the number of hit records, at 4 of run records, at 8 whether separated hex
;; was seen. The offsets are constants in the code (no pointer held in a register through the
;; loop); scan-wasm.ts names the same ones and a test holds the two to each other.
(module
  (memory (export "memory") 1)
  ;; Whether the bytes a run decodes to are surely not text detect.ts keptText keeps: fewer than 8,
  ;; or a control byte (0x00-0x08, 0x0e-0x1f, 0x7f) and no printable run of 10 (not starting with a
  ;; space). 0 says maybe: the JavaScript decodes the run and decides. The sextets are at 0x100, the
  ;; hex digits' values at 0x180 (scan-wasm.ts writes both).
  (func $dead64 (param $start i32) (param $end i32) (result i32)
    (local $i i32) (local $acc i32) (local $bits i32) (local $n i32) (local $run i32) (local $control i32) (local $b i32)
    ;; a trailing group of one character gives no byte
    (if (i32.eq (i32.and (i32.sub (local.get $end) (local.get $start)) (i32.const 3)) (i32.const 1))
      (then (local.set $end (i32.sub (local.get $end) (i32.const 1)))))
    (local.set $i (local.get $start))
    (block $done
      (loop $char
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $acc
          (i32.and
            (i32.or (i32.shl (local.get $acc) (i32.const 6)) (i32.load8_u offset=256 (i32.load8_u offset=65536 (local.get $i))))
            (i32.const 0xffff)))
        (local.set $bits (i32.add (local.get $bits) (i32.const 6)))
        (if (i32.ge_s (local.get $bits) (i32.const 8))
          (then
            (local.set $bits (i32.sub (local.get $bits) (i32.const 8)))
            (local.set $b (i32.and (i32.shr_u (local.get $acc) (local.get $bits)) (i32.const 0xff)))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))
            ;; printable (0x20-0x7e): a run, never starting with a space; else a control byte or not
            (if (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))
              (then
                (if (i32.or (i32.gt_s (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20)))
                  (then (local.set $run (i32.add (local.get $run) (i32.const 1)))))
                (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0)))))
              (else
                (local.set $run (i32.const 0))
                (local.set $control
                  (i32.or (local.get $control)
                    (select
                      (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.ge_u (local.get $b) (i32.const 0x0e)))
                      (i32.eq (local.get $b) (i32.const 0x7f))
                      (i32.lt_u (local.get $b) (i32.const 0x20)))))))
  ))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $char)))
    (i32.or (i32.lt_s (local.get $n) (i32.const 8)) (local.get $control)))

  (func $deadHex (param $start i32) (param $end i32) (result i32)
    (local $i i32) (local $n i32) (local $run i32) (local $control i32) (local $b i32)
    ;; an odd last digit gives no byte
    (if (i32.and (i32.sub (local.get $end) (local.get $start)) (i32.const 1))
      (then (local.set $end (i32.sub (local.get $end) (i32.const 1)))))
    (local.set $i (local.get $start))
    (block $done
      (loop $pair
        (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.const 1)) (local.get $end)))
        (local.set $b
          (i32.or
            (i32.shl (i32.load8_u offset=384 (i32.load8_u offset=65536 (local.get $i))) (i32.const 4))
            (i32.load8_u offset=384 (i32.load8_u offset=65537 (local.get $i)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        ;; printable (0x20-0x7e): a run, never starting with a space; else a control byte or not
            (if (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))
              (then
                (if (i32.or (i32.gt_s (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20)))
                  (then (local.set $run (i32.add (local.get $run) (i32.const 1)))))
                (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0)))))
              (else
                (local.set $run (i32.const 0))
                (local.set $control
                  (i32.or (local.get $control)
                    (select
                      (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.ge_u (local.get $b) (i32.const 0x0e)))
                      (i32.eq (local.get $b) (i32.const 0x7f))
                      (i32.lt_u (local.get $b) (i32.const 0x20)))))))

        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $pair)))
    (i32.or (i32.lt_s (local.get $n) (i32.const 8)) (local.get $control)))

  (func (export "scan")
    (param $length i32) (param $next i32) (param $table i32) (param $endFrom i32)
    (local $i i32) (local $code i32) (local $entry i32) (local $state i32) (local $cls i32)
    (local $open i32) (local $b64Length i32) (local $b64Flags i32) (local $inB64 i32)
    (local $group i32) (local $chain i32) (local $inHex i32) (local $pair i32)
    (local $at i32)
    (i32.store (i32.const 0) (i32.const 0))
    (i32.store (i32.const 4) (i32.const 0))
    (i32.store (i32.const 8) (i32.const 0))
    (local.set $open (i32.const -1))
    (block $done
      (loop $char
        (br_if $done (i32.ge_u (local.get $i) (local.get $length)))
        (local.set $code (i32.load8_u offset=65536 (local.get $i)))
        (local.set $entry (i32.load16_u (i32.add (local.get $table) (i32.shl (local.get $code) (i32.const 1)))))
        (local.set $state
          (i32.load16_u
            (i32.add (local.get $next)
              (i32.shl (i32.add (local.get $state) (i32.and (local.get $entry) (i32.const 0xff))) (i32.const 1)))))
        (i32.store offset=327680 (i32.shl (local.get $i) (i32.const 2)) (local.get $state))
        (if (i32.ge_u (local.get $state) (local.get $endFrom))
          (then
            (local.set $at (i32.load (i32.const 0)))
            (i32.store offset=1376256 (i32.shl (local.get $at) (i32.const 3)) (local.get $state))
            (i32.store offset=1376260 (i32.shl (local.get $at) (i32.const 3)) (local.get $i))
            (i32.store (i32.const 0) (i32.add (local.get $at) (i32.const 1)))))
        (local.set $cls (i32.shr_u (local.get $entry) (i32.const 8)))
        ;; a quote closes a JSON value (4 to 256 value characters since the opening quote) or opens one
        (if (i32.eq (local.get $code) (i32.const 0x22))
          (then
            (if (i32.and
                  (i32.ge_s (local.get $open) (i32.const 0))
                  (i32.and
                    (i32.ge_s (i32.sub (local.get $i) (local.get $open)) (i32.const 4))
                    (i32.le_s (i32.sub (local.get $i) (local.get $open)) (i32.const 256))))
              (then
                (local.set $at (i32.mul (i32.load (i32.const 4)) (i32.const 12)))
                (i32.store offset=3473408 (local.get $at) (i32.const 0))
                (i32.store offset=3473412 (local.get $at) (local.get $open))
                (i32.store offset=3473416 (local.get $at) (local.get $i))
                (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))
                (local.set $open (i32.const -1)))
              (else (local.set $open (i32.add (local.get $i) (i32.const 1))))))
          (else
            ;; C_VALUE (bit 7): kept; any other character: -1
            (local.set $open
              (i32.or (local.get $open)
                (i32.sub (i32.and (i32.shr_u (local.get $cls) (i32.const 7)) (i32.const 1)) (i32.const 1))))))
        ;; C_B64 (bit 0) as a mask; a run of 16 or more ends here when off the alphabet
        (local.set $inB64 (i32.shr_s (i32.shl (local.get $cls) (i32.const 31)) (i32.const 31)))
        (if (i32.lt_s
              (i32.and (i32.sub (i32.const 15) (local.get $b64Length)) (i32.xor (local.get $inB64) (i32.const -1)))
              (i32.const 0))
          (then
            (local.set $at (i32.mul (i32.load (i32.const 4)) (i32.const 12)))
            (i32.store offset=3473408 (local.get $at)
              (i32.or (i32.or (i32.const 1) (i32.shl (local.get $b64Flags) (i32.const 8)))
                (i32.shl (call $dead64 (i32.sub (local.get $i) (local.get $b64Length)) (local.get $i)) (i32.const 4))))
            (i32.store offset=3473412 (local.get $at) (i32.sub (local.get $i) (local.get $b64Length)))
            (i32.store offset=3473416 (local.get $at) (local.get $i))
            (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))))
        (local.set $b64Length (i32.and (i32.add (local.get $b64Length) (i32.const 1)) (local.get $inB64)))
        (local.set $b64Flags (i32.and (i32.or (local.get $b64Flags) (local.get $cls)) (local.get $inB64)))
        ;; C_HEX (bit 1) as a mask
        (local.set $inHex (i32.shr_s (i32.shl (local.get $cls) (i32.const 30)) (i32.const 31)))
        (if (i32.lt_s
              (i32.and (i32.sub (i32.const 15) (local.get $group)) (i32.xor (local.get $inHex) (i32.const -1)))
              (i32.const 0))
          (then
            (local.set $at (i32.mul (i32.load (i32.const 4)) (i32.const 12)))
            (i32.store offset=3473408 (local.get $at)
              (i32.or (i32.const 2) (i32.shl (call $deadHex (i32.sub (local.get $i) (local.get $group)) (local.get $i)) (i32.const 4))))
            (i32.store offset=3473412 (local.get $at) (i32.sub (local.get $i) (local.get $group)))
            (i32.store offset=3473416 (local.get $at) (local.get $i))
            (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))))
        ;; off hex: a separator (C_SEP, bit 4) after exactly 2 digits goes on with the chain, else it breaks
        (local.set $pair
          (i32.and
            (i32.and (i32.shr_u (local.get $cls) (i32.const 4)) (i32.const 1))
            (i32.shr_u (i32.sub (i32.xor (local.get $group) (i32.const 2)) (i32.const 1)) (i32.const 31))))
        (local.set $chain
          (i32.or
            (i32.and (local.get $chain) (local.get $inHex))
            (i32.and (i32.add (local.get $chain) (i32.const 1)) (i32.sub (i32.const 0) (local.get $pair)))))
        (if (i32.ge_s (local.get $chain) (i32.const 7)) (then (i32.store (i32.const 8) (i32.const 1))))
        (local.set $group (i32.and (i32.add (local.get $group) (i32.const 1)) (local.get $inHex)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $char)))
    ;; the end closes the open runs
    (if (i32.ge_s (local.get $b64Length) (i32.const 16))
      (then
        (local.set $at (i32.mul (i32.load (i32.const 4)) (i32.const 12)))
        (i32.store offset=3473408 (local.get $at)
          (i32.or (i32.or (i32.const 1) (i32.shl (local.get $b64Flags) (i32.const 8)))
            (i32.shl (call $dead64 (i32.sub (local.get $length) (local.get $b64Length)) (local.get $length)) (i32.const 4))))
        (i32.store offset=3473412 (local.get $at) (i32.sub (local.get $length) (local.get $b64Length)))
        (i32.store offset=3473416 (local.get $at) (local.get $length))
        (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))))
    (if (i32.ge_s (local.get $group) (i32.const 16))
      (then
        (local.set $at (i32.mul (i32.load (i32.const 4)) (i32.const 12)))
        (i32.store offset=3473408 (local.get $at)
          (i32.or (i32.const 2) (i32.shl (call $deadHex (i32.sub (local.get $length) (local.get $group)) (local.get $length)) (i32.const 4))))
        (i32.store offset=3473412 (local.get $at) (i32.sub (local.get $length) (local.get $group)))
        (i32.store offset=3473416 (local.get $at) (local.get $length))
        (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))))
))
