;; The keyword automaton and the run survey of src/leak/keywords.ts (#scanSurveying) over the
;; bytes of an ASCII text, as WebAssembly: the same results at a fraction of the JavaScript loop's
;; cost a character (issue 22). The automaton steps a character at a time (two chains at once);
;; the survey reads 64 characters a step as bit masks (SIMD). scripts/gen-scan-wasm.mjs assembles
;; it into src/leak/scan-wasm.gen.ts; src/leak/scan-wasm.ts lays out the memory and reads the
;; results back, and test/leak/scan-wasm.test.ts holds it to the JavaScript machine on random and
;; edge texts.
;;
;; scan(length, next, table, endFrom, warm) reads `length` bytes at 0x10000 (every one below 0x80:
;; the caller checks; at most 256 KiB, scan-wasm.ts MAX_TEXT), with `next` the transitions (u16, a
;; state is the offset of its row), `table` per character code its column (low byte) and run class
;; (high byte, runs.ts CLASS), and `warm` the longest keyword. It writes the state after each byte
;; at 0x50000 (u16 each), a record (state, offset) at 0x150000 for each byte after which a keyword
;; ends (state >= endFrom), in order; at 0x350000 a record (kind | flags << 8, start, end) for each
;; run of 16 or more, in order for each kind: 1 a base64 run (flags: the union of its classes), 2 a
;; hex run; and at 0x450000 (start, end, state after its last character) of each quoted JSON
;; value (not a key: no colon after it), in order. At address 0 it leaves
;; the number of hit records, at 4 of run records, at 8 whether separated hex was seen, at 12 the
;; number of quoted values. The offsets are constants in the code (no pointer held in a register
;; through the loops); scan-wasm.ts names the same ones and a test holds the two to each other.
(module
  (memory (export "memory") 1)
  ;; Whether the bytes a run decodes to are surely not text detect.ts keptText keeps: fewer than 8,
  ;; or a control byte (0x00-0x08, 0x0e-0x1f, 0x7f) and no printable run of 10 (not starting with a
  ;; space). 0 says maybe: the JavaScript decodes the run and decides. The sextets are at 0x100, the
  ;; hex digits' values at 0x180 (scan-wasm.ts writes both). Each byte is looked at without a branch
  ;; on its value (random bytes would mispredict one about every other byte): a printable byte
  ;; (0x20-0x7e) goes on with a run, which never starts with a space; any other ends it, and a
  ;; control byte is noted.
  (func $dead64 (param $start i32) (param $end i32) (result i32)
    (local $i i32) (local $v i32) (local $n i32) (local $run i32) (local $control i32) (local $b i32) (local $full i32)
    ;; a trailing group of one character gives no byte
    (if (i32.eq (i32.and (i32.sub (local.get $end) (local.get $start)) (i32.const 3)) (i32.const 1))
      (then (local.set $end (i32.sub (local.get $end) (i32.const 1)))))
    (local.set $n (i32.shr_u (i32.mul (i32.sub (local.get $end) (local.get $start)) (i32.const 3)) (i32.const 2)))
    ;; four characters (24 bits) at a time: three bytes
    (local.set $full (i32.sub (local.get $end) (i32.and (i32.sub (local.get $end) (local.get $start)) (i32.const 3))))
    (local.set $i (local.get $start))
    (block $done
      (loop $group
        (br_if $done (i32.ge_u (local.get $i) (local.get $full)))
        (local.set $v
          (i32.or
            (i32.or (i32.shl (i32.load8_u offset=256 (i32.load8_u offset=65536 (local.get $i))) (i32.const 18)) (i32.shl (i32.load8_u offset=256 (i32.load8_u offset=65537 (local.get $i))) (i32.const 12)))
            (i32.or (i32.shl (i32.load8_u offset=256 (i32.load8_u offset=65538 (local.get $i))) (i32.const 6)) (i32.load8_u offset=256 (i32.load8_u offset=65539 (local.get $i))))))
        (local.set $b (i32.shr_u (local.get $v) (i32.const 16)))
        (local.set $run
          (select
            (i32.add (local.get $run) (i32.or (i32.ne (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20))))
            (i32.const 0)
            (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))))
        (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0))))
        (local.set $control
          (i32.or (local.get $control)
            (i32.or
              (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.le_u (i32.sub (local.get $b) (i32.const 0x0e)) (i32.const 0x11)))
              (i32.eq (local.get $b) (i32.const 0x7f)))))
        (local.set $b (i32.and (i32.shr_u (local.get $v) (i32.const 8)) (i32.const 0xff)))
        (local.set $run
          (select
            (i32.add (local.get $run) (i32.or (i32.ne (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20))))
            (i32.const 0)
            (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))))
        (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0))))
        (local.set $control
          (i32.or (local.get $control)
            (i32.or
              (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.le_u (i32.sub (local.get $b) (i32.const 0x0e)) (i32.const 0x11)))
              (i32.eq (local.get $b) (i32.const 0x7f)))))
        (local.set $b (i32.and (local.get $v) (i32.const 0xff)))
        (local.set $run
          (select
            (i32.add (local.get $run) (i32.or (i32.ne (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20))))
            (i32.const 0)
            (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))))
        (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0))))
        (local.set $control
          (i32.or (local.get $control)
            (i32.or
              (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.le_u (i32.sub (local.get $b) (i32.const 0x0e)) (i32.const 0x11)))
              (i32.eq (local.get $b) (i32.const 0x7f)))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $group)))
    ;; a last group of two characters gives one byte (12 bits, the top 8), of three two (18 bits, the top 16)
    (if (i32.ge_u (i32.sub (local.get $end) (local.get $full)) (i32.const 2))
      (then
        (local.set $v (i32.or (i32.shl (i32.load8_u offset=256 (i32.load8_u offset=65536 (local.get $i))) (i32.const 18)) (i32.shl (i32.load8_u offset=256 (i32.load8_u offset=65537 (local.get $i))) (i32.const 12))))
        (if (i32.eq (i32.sub (local.get $end) (local.get $full)) (i32.const 3))
          (then (local.set $v (i32.or (local.get $v) (i32.shl (i32.load8_u offset=256 (i32.load8_u offset=65538 (local.get $i))) (i32.const 6))))))
        (local.set $b (i32.shr_u (local.get $v) (i32.const 16)))
        (local.set $run
          (select
            (i32.add (local.get $run) (i32.or (i32.ne (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20))))
            (i32.const 0)
            (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))))
        (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0))))
        (local.set $control
          (i32.or (local.get $control)
            (i32.or
              (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.le_u (i32.sub (local.get $b) (i32.const 0x0e)) (i32.const 0x11)))
              (i32.eq (local.get $b) (i32.const 0x7f)))))
        (if (i32.eq (i32.sub (local.get $end) (local.get $full)) (i32.const 3))
          (then
            (local.set $b (i32.and (i32.shr_u (local.get $v) (i32.const 8)) (i32.const 0xff)))
            (local.set $run
              (select
                (i32.add (local.get $run) (i32.or (i32.ne (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20))))
                (i32.const 0)
                (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))))
            (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0))))
            (local.set $control
              (i32.or (local.get $control)
                (i32.or
                  (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.le_u (i32.sub (local.get $b) (i32.const 0x0e)) (i32.const 0x11)))
                  (i32.eq (local.get $b) (i32.const 0x7f)))))))))
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
        ;; without a branch on the byte (random bytes would mispredict one about every other byte):
        ;; a printable byte (0x20-0x7e) goes on with a run, which never starts with a space; any other
        ;; ends it, and a control byte (0x00-0x08, 0x0e-0x1f, 0x7f) is noted
        (local.set $run
          (select
            (i32.add (local.get $run) (i32.or (i32.ne (local.get $run) (i32.const 0)) (i32.ne (local.get $b) (i32.const 0x20))))
            (i32.const 0)
            (i32.le_u (i32.sub (local.get $b) (i32.const 0x20)) (i32.const 0x5e))))
        (if (i32.ge_s (local.get $run) (i32.const 10)) (then (return (i32.const 0))))
        (local.set $control
          (i32.or (local.get $control)
            (i32.or
              (i32.or (i32.le_u (local.get $b) (i32.const 0x08)) (i32.le_u (i32.sub (local.get $b) (i32.const 0x0e)) (i32.const 0x11)))
              (i32.eq (local.get $b) (i32.const 0x7f)))))

        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br $pair)))
    (i32.or (i32.lt_s (local.get $n) (i32.const 8)) (local.get $control)))

  ;; Whether the text from `k` on holds a colon after white space (0x09-0x0d, 0x20: what \s is in
  ;; ASCII), before `length`: a quoted value followed by one is a JSON key.
  (func $colonAfter (param $k i32) (param $length i32) (result i32)
    (local $c i32)
    (block $done
      (loop $space
        (br_if $done (i32.ge_u (local.get $k) (local.get $length)))
        (local.set $c (i32.load8_u offset=65536 (local.get $k)))
        (br_if $done (i32.eqz (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.le_u (i32.sub (local.get $c) (i32.const 0x09)) (i32.const 4)))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $space)))
    (i32.and (i32.lt_u (local.get $k) (local.get $length)) (i32.eq (i32.load8_u offset=65536 (local.get $k)) (i32.const 0x3a))))

  ;; A run record (kind | flags << 8, start, end) at 0x350000, after those before it (count at 4).
  (func $record (param $kind i32) (param $start i32) (param $end i32)
    (local $at i32)
    (local.set $at (i32.mul (i32.load (i32.const 4)) (i32.const 12)))
    (i32.store offset=3473408 (local.get $at) (local.get $kind))
    (i32.store offset=3473412 (local.get $at) (local.get $start))
    (i32.store offset=3473416 (local.get $at) (local.get $end))
    (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1))))

  ;; A run of 16 or more [start, end): kind 1 base64, with the union of its characters' classes
  ;; (CLASS at 0x200) and the dead mark; kind 2 hex, with its dead mark.
  (func $run (param $kind i32) (param $start i32) (param $end i32)
    (local $i i32) (local $flags i32)
    (if (i32.eq (local.get $kind) (i32.const 1))
      (then
        (local.set $i (local.get $start))
        (loop $char
          (local.set $flags (i32.or (local.get $flags) (i32.load8_u offset=512 (i32.load8_u offset=65536 (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $char (i32.lt_u (local.get $i) (local.get $end))))
        ;; a run of hex digits in one case is read as hex only (detect.ts skips it as base64): no dead mark;
        ;; the test is keywords.ts closeBase64's (no C_NOT_HEX, 32; not both C_LOWER_HEX and C_UPPER_HEX, 12)
        (call $record
          (i32.or (i32.or (i32.const 1) (i32.shl (local.get $flags) (i32.const 8)))
            (i32.shl
              (if (result i32)
                (i32.and (i32.eqz (i32.and (local.get $flags) (i32.const 32))) (i32.ne (i32.and (local.get $flags) (i32.const 12)) (i32.const 12)))
                (then (i32.const 0))
                (else (call $dead64 (local.get $start) (local.get $end))))
              (i32.const 4)))
          (local.get $start) (local.get $end)))
      (else
        (call $record
          (i32.or (i32.const 2) (i32.shl (call $deadHex (local.get $start) (local.get $end)) (i32.const 4)))
          (local.get $start) (local.get $end)))))

  ;; The runs of one class in the 64 characters at `base`, bit i of `m` set when character base + i
  ;; has the class: records every run of 16 or more that ends in the block, with `carry` the
  ;; length of the run that reaches the block from before; returns the length of the run that
  ;; reaches its end (the next block's carry). Only runs of 16 or more are looked at one by one.
  (func $runs (param $m i64) (param $base i32) (param $carry i32) (param $kind i32) (result i32)
    (local $lead i32) (local $rest i64) (local $trail i32) (local $y i64) (local $s i32) (local $len i32)
    (if (i64.eq (local.get $m) (i64.const -1)) (then (return (i32.add (local.get $carry) (i32.const 64)))))
    ;; the run from before goes on for the block's first `lead` characters
    (local.set $lead (i32.wrap_i64 (i64.ctz (i64.xor (local.get $m) (i64.const -1)))))
    (if (i32.ge_u (i32.add (local.get $carry) (local.get $lead)) (i32.const 16))
      (then (call $run (local.get $kind) (i32.sub (local.get $base) (local.get $carry)) (i32.add (local.get $base) (local.get $lead)))))
    ;; without it (m + 1 carries through the ones at bit 0), and without the run at the top, which goes on
    (local.set $rest (i64.and (local.get $m) (i64.add (local.get $m) (i64.const 1))))
    (local.set $trail (i32.wrap_i64 (i64.clz (i64.xor (local.get $rest) (i64.const -1)))))
    (if (local.get $trail)
      (then
        (local.set $rest
          (i64.and (local.get $rest)
            (i64.sub (i64.shl (i64.const 1) (i64.extend_i32_u (i32.sub (i32.const 64) (local.get $trail)))) (i64.const 1))))))
    ;; bit i of y: bits i to i + 15 of rest all set
    (local.set $y (i64.and (local.get $rest) (i64.shr_u (local.get $rest) (i64.const 1))))
    (local.set $y (i64.and (local.get $y) (i64.shr_u (local.get $y) (i64.const 2))))
    (local.set $y (i64.and (local.get $y) (i64.shr_u (local.get $y) (i64.const 4))))
    (local.set $y (i64.and (local.get $y) (i64.shr_u (local.get $y) (i64.const 8))))
    (block $done
      (loop $long
        (br_if $done (i64.eqz (local.get $y)))
        ;; the lowest bit of y starts a run of 16 or more, which never reaches bit 63
        (local.set $s (i32.wrap_i64 (i64.ctz (local.get $y))))
        (local.set $len
          (i32.wrap_i64 (i64.ctz (i64.xor (i64.shr_u (local.get $rest) (i64.extend_i32_u (local.get $s))) (i64.const -1)))))
        (call $run (local.get $kind) (i32.add (local.get $base) (local.get $s)) (i32.add (i32.add (local.get $base) (local.get $s)) (local.get $len)))
        (local.set $y (i64.and (local.get $y) (i64.shl (i64.const -1) (i64.extend_i32_u (i32.add (local.get $s) (local.get $len))))))
        (br $long)))
    (local.get $trail))

  ;; control(length): 1 when the `length` bytes at 0x10000 hold a control byte (0x00-0x08,
  ;; 0x0e-0x1f, 0x7f: detect.ts CONTROL), 16 a step; the bytes past them up to a multiple of 16
  ;; are made spaces first.
  (func (export "control") (param $length i32) (result i32)
    (local $i i32) (local $v v128) (local $found v128)
    (memory.fill (i32.add (i32.const 65536) (local.get $length)) (i32.const 0x20)
      (i32.and (i32.sub (i32.const 0) (local.get $length)) (i32.const 15)))
    (block $done
      (loop $vector
        (br_if $done (i32.ge_u (local.get $i) (local.get $length)))
        (local.set $v (v128.load offset=65536 (local.get $i)))
        ;; below 0x20 and not 0x09-0x0d, or 0x7f
        (local.set $found
          (v128.or (local.get $found)
            (v128.or
              (v128.andnot
                (i8x16.lt_u (local.get $v) (v128.const i8x16 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32))
                (i8x16.lt_u (i8x16.sub (local.get $v) (v128.const i8x16 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9)) (v128.const i8x16 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5)))
              (i8x16.eq (local.get $v) (v128.const i8x16 127 127 127 127 127 127 127 127 127 127 127 127 127 127 127 127)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $vector)))
    (v128.any_true (local.get $found)))

  (func (export "scan")
    (param $length i32) (param $next i32) (param $table i32) (param $endFrom i32) (param $warm i32)
    (local $i i32) (local $state i32) (local $at i32) (local $mid i32) (local $stateB i32) (local $hitsA i32) (local $hitsB i32)
    (local $blocks i32) (local $base i32) (local $j i32) (local $shift i64)
    (local $v v128) (local $c v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local $t4 v128) (local $t5 v128) (local $t6 v128) (local $t7 v128)
    (local $mB i64) (local $mH i64) (local $mS i64) (local $mV i64) (local $mQ i64)
    (local $b64Carry i32) (local $hexCarry i32) (local $prevH i64) (local $pairs i64) (local $prevPairs i64) (local $z i64)
    (local $quotes i32) (local $nv i64) (local $q i64) (local $bit i32) (local $below i64) (local $last i32) (local $open i32) (local $lastNV i32)
    (i32.store (i32.const 0) (i32.const 0))
    (i32.store (i32.const 4) (i32.const 0))
    (i32.store (i32.const 8) (i32.const 0))

    ;; The keyword automaton: a state after each character, a hit record where a keyword ends.
    ;; A step waits on the one before (its state picks the row): one chain runs at the latency of
    ;; a load. Two chains run at once, A over the first half and B over the second. B starts from
    ;; the root `warm` characters (the longest keyword) before the half: a state stands for at
    ;; most that many characters, so from the half on B's states are the text's. B's hit records
    ;; go to the second half of their space and are moved after A's at the end. A short text, or
    ;; one too short for the warm-up, is one chain.
    (local.set $mid (i32.shr_u (local.get $length) (i32.const 1)))
    (if (i32.or (i32.lt_u (local.get $length) (i32.const 256)) (i32.gt_u (local.get $warm) (local.get $mid)))
      (then (local.set $mid (local.get $length))))
    (local.set $j (local.get $length))
    (if (i32.lt_u (local.get $mid) (local.get $length))
      (then
        (local.set $j (i32.sub (local.get $mid) (local.get $warm)))
        (block $warmed
          (loop $warming
            (br_if $warmed (i32.ge_u (local.get $j) (local.get $mid)))
            (local.set $stateB
              (i32.load16_u
                (i32.add
                  (i32.add (local.get $next)
                    (i32.shl
                      (i32.and (i32.load16_u (i32.add (local.get $table) (i32.shl (i32.load8_u offset=65536 (local.get $j)) (i32.const 1)))) (i32.const 0xff))
                      (i32.const 1)))
                  (i32.shl (local.get $stateB) (i32.const 1)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $warming)))))
    (block $done
      (loop $char
        (br_if $done (i32.ge_u (local.get $i) (local.get $mid)))
        ;; the column's address is read off the text, apart from the state: the chain from one
        ;; state to the next is one add and one load
        (local.set $state
          (i32.load16_u
            (i32.add
              (i32.add (local.get $next)
                (i32.shl
                  (i32.and (i32.load16_u (i32.add (local.get $table) (i32.shl (i32.load8_u offset=65536 (local.get $i)) (i32.const 1)))) (i32.const 0xff))
                  (i32.const 1)))
              (i32.shl (local.get $state) (i32.const 1)))))
        (i32.store16 offset=327680 (i32.shl (local.get $i) (i32.const 1)) (local.get $state))
        (if (i32.ge_u (local.get $state) (local.get $endFrom))
          (then
            (i32.store offset=1376256 (i32.shl (local.get $hitsA) (i32.const 3)) (local.get $state))
            (i32.store offset=1376260 (i32.shl (local.get $hitsA) (i32.const 3)) (local.get $i))
            (local.set $hitsA (i32.add (local.get $hitsA) (i32.const 1)))))
        (if (i32.lt_u (local.get $j) (local.get $length))
          (then
            (local.set $stateB
              (i32.load16_u
                (i32.add
                  (i32.add (local.get $next)
                    (i32.shl
                      (i32.and (i32.load16_u (i32.add (local.get $table) (i32.shl (i32.load8_u offset=65536 (local.get $j)) (i32.const 1)))) (i32.const 0xff))
                      (i32.const 1)))
                  (i32.shl (local.get $stateB) (i32.const 1)))))
            (i32.store16 offset=327680 (i32.shl (local.get $j) (i32.const 1)) (local.get $stateB))
            (if (i32.ge_u (local.get $stateB) (local.get $endFrom))
              (then
                (i32.store offset=2424832 (i32.shl (local.get $hitsB) (i32.const 3)) (local.get $stateB))
                (i32.store offset=2424836 (i32.shl (local.get $hitsB) (i32.const 3)) (local.get $j))
                (local.set $hitsB (i32.add (local.get $hitsB) (i32.const 1)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $char)))
    ;; B's last character when its half is the longer
    (if (i32.lt_u (local.get $j) (local.get $length))
      (then
        (local.set $stateB
          (i32.load16_u
            (i32.add
              (i32.add (local.get $next)
                (i32.shl
                  (i32.and (i32.load16_u (i32.add (local.get $table) (i32.shl (i32.load8_u offset=65536 (local.get $j)) (i32.const 1)))) (i32.const 0xff))
                  (i32.const 1)))
              (i32.shl (local.get $stateB) (i32.const 1)))))
        (i32.store16 offset=327680 (i32.shl (local.get $j) (i32.const 1)) (local.get $stateB))
        (if (i32.ge_u (local.get $stateB) (local.get $endFrom))
          (then
            (i32.store offset=2424832 (i32.shl (local.get $hitsB) (i32.const 3)) (local.get $stateB))
            (i32.store offset=2424836 (i32.shl (local.get $hitsB) (i32.const 3)) (local.get $j))
            (local.set $hitsB (i32.add (local.get $hitsB) (i32.const 1)))))
))
    (memory.copy (i32.add (i32.const 1376256) (i32.shl (local.get $hitsA) (i32.const 3))) (i32.const 2424832) (i32.shl (local.get $hitsB) (i32.const 3)))
    (i32.store (i32.const 0) (i32.add (local.get $hitsA) (local.get $hitsB)))

    ;; The run survey, 64 characters a block: each class as a 64-bit mask (bit i: character
    ;; base + i), from the CLASS rows at 0x200 (row h for codes 16h to 16h + 15; a swizzle gives
    ;; 0 off its row). The bytes past the text up to its last block's end are made 0 (class 0).
    (local.set $blocks (i32.shr_u (i32.add (local.get $length) (i32.const 63)) (i32.const 6)))
    (memory.fill (i32.add (i32.const 65536) (local.get $length)) (i32.const 0)
      (i32.sub (i32.shl (local.get $blocks) (i32.const 6)) (local.get $length)))
    (local.set $t0 (v128.load offset=512 (i32.const 0)))
    (local.set $t1 (v128.load offset=512 (i32.const 16)))
    (local.set $t2 (v128.load offset=512 (i32.const 32)))
    (local.set $t3 (v128.load offset=512 (i32.const 48)))
    (local.set $t4 (v128.load offset=512 (i32.const 64)))
    (local.set $t5 (v128.load offset=512 (i32.const 80)))
    (local.set $t6 (v128.load offset=512 (i32.const 96)))
    (local.set $t7 (v128.load offset=512 (i32.const 112)))
    (local.set $open (i32.const -1))
    (local.set $lastNV (i32.const -1))
    (local.set $i (i32.const 0))
    (block $end
      (loop $block
        (br_if $end (i32.ge_u (local.get $i) (local.get $blocks)))
        (local.set $base (i32.shl (local.get $i) (i32.const 6)))
        (local.set $mB (i64.const 0))
        (local.set $mH (i64.const 0))
        (local.set $mS (i64.const 0))
        (local.set $mV (i64.const 0))
        (local.set $mQ (i64.const 0))
        (local.set $j (i32.const 0))
        (loop $vector
          (local.set $v (v128.load offset=65536 (i32.add (local.get $base) (local.get $j))))
          (local.set $c
            (v128.or
              (v128.or
                (v128.or
                  (i8x16.swizzle (local.get $t0) (local.get $v))
                  (i8x16.swizzle (local.get $t1) (i8x16.sub (local.get $v) (v128.const i8x16 16 16 16 16 16 16 16 16 16 16 16 16 16 16 16 16))))
                (v128.or
                  (i8x16.swizzle (local.get $t2) (i8x16.sub (local.get $v) (v128.const i8x16 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32)))
                  (i8x16.swizzle (local.get $t3) (i8x16.sub (local.get $v) (v128.const i8x16 48 48 48 48 48 48 48 48 48 48 48 48 48 48 48 48)))))
              (v128.or
                (v128.or
                  (i8x16.swizzle (local.get $t4) (i8x16.sub (local.get $v) (v128.const i8x16 64 64 64 64 64 64 64 64 64 64 64 64 64 64 64 64)))
                  (i8x16.swizzle (local.get $t5) (i8x16.sub (local.get $v) (v128.const i8x16 80 80 80 80 80 80 80 80 80 80 80 80 80 80 80 80))))
                (v128.or
                  (i8x16.swizzle (local.get $t6) (i8x16.sub (local.get $v) (v128.const i8x16 96 96 96 96 96 96 96 96 96 96 96 96 96 96 96 96)))
                  (i8x16.swizzle (local.get $t7) (i8x16.sub (local.get $v) (v128.const i8x16 112 112 112 112 112 112 112 112 112 112 112 112 112 112 112 112)))))))
          (local.set $shift (i64.extend_i32_u (local.get $j)))
          ;; a class bit k moved to the top of each byte (shl 7 - k) is what bitmask reads
          (local.set $mB (i64.or (local.get $mB) (i64.shl (i64.extend_i32_u (i8x16.bitmask (i8x16.shl (local.get $c) (i32.const 7)))) (local.get $shift))))
          (local.set $mH (i64.or (local.get $mH) (i64.shl (i64.extend_i32_u (i8x16.bitmask (i8x16.shl (local.get $c) (i32.const 6)))) (local.get $shift))))
          (local.set $mS (i64.or (local.get $mS) (i64.shl (i64.extend_i32_u (i8x16.bitmask (i8x16.shl (local.get $c) (i32.const 3)))) (local.get $shift))))
          (local.set $mV (i64.or (local.get $mV) (i64.shl (i64.extend_i32_u (i8x16.bitmask (local.get $c))) (local.get $shift))))
          (local.set $mQ
            (i64.or (local.get $mQ)
              (i64.shl (i64.extend_i32_u (i8x16.bitmask (i8x16.eq (local.get $v) (v128.const i8x16 34 34 34 34 34 34 34 34 34 34 34 34 34 34 34 34))))
                (local.get $shift))))
          (local.set $j (i32.add (local.get $j) (i32.const 16)))
          (br_if $vector (i32.lt_u (local.get $j) (i32.const 64))))

        ;; base64 runs (C_B64, bit 0) and hex runs (C_HEX, bit 1) of 16 or more
        (local.set $b64Carry (call $runs (local.get $mB) (local.get $base) (local.get $b64Carry) (i32.const 1)))
        (local.set $hexCarry (call $runs (local.get $mH) (local.get $base) (local.get $hexCarry) (i32.const 2)))

        ;; Separated hex: a pair ends at a separator (C_SEP, bit 4) after exactly two hex digits;
        ;; 7 pairs in a row are 7 such separators 3 apart. The previous block's masks give the bits
        ;; the shifts bring in.
        (local.set $pairs
          (i64.and (local.get $mS)
            (i64.and
              (i64.and
                (i64.or (i64.shl (local.get $mH) (i64.const 1)) (i64.shr_u (local.get $prevH) (i64.const 63)))
                (i64.or (i64.shl (local.get $mH) (i64.const 2)) (i64.shr_u (local.get $prevH) (i64.const 62))))
              (i64.xor (i64.or (i64.shl (local.get $mH) (i64.const 3)) (i64.shr_u (local.get $prevH) (i64.const 61))) (i64.const -1)))))
        (if (i64.ne (local.get $pairs) (i64.const 0))
          (then
            (local.set $z
              (i64.and
                (i64.and
                  (i64.and (local.get $pairs) (i64.or (i64.shl (local.get $pairs) (i64.const 3)) (i64.shr_u (local.get $prevPairs) (i64.const 61))))
                  (i64.and
                    (i64.or (i64.shl (local.get $pairs) (i64.const 6)) (i64.shr_u (local.get $prevPairs) (i64.const 58)))
                    (i64.or (i64.shl (local.get $pairs) (i64.const 9)) (i64.shr_u (local.get $prevPairs) (i64.const 55)))))
                (i64.and
                  (i64.and
                    (i64.or (i64.shl (local.get $pairs) (i64.const 12)) (i64.shr_u (local.get $prevPairs) (i64.const 52)))
                    (i64.or (i64.shl (local.get $pairs) (i64.const 15)) (i64.shr_u (local.get $prevPairs) (i64.const 49))))
                  (i64.or (i64.shl (local.get $pairs) (i64.const 18)) (i64.shr_u (local.get $prevPairs) (i64.const 46))))))
            (if (i64.ne (local.get $z) (i64.const 0)) (then (i32.store (i32.const 8) (i32.const 1))))))
        (local.set $prevH (local.get $mH))
        (local.set $prevPairs (local.get $pairs))

        ;; Quoted JSON values: at each quote, the value opened by the quote before is taken when no
        ;; character since is other than a value character (C_VALUE, bit 7) and it is 4 to 256
        ;; long; else this quote opens one. `last` is the last such other character before the
        ;; quote: the quote before is one, so `last < open` says none came since.
        (local.set $nv (i64.xor (local.get $mV) (i64.const -1)))
        (local.set $q (local.get $mQ))
        (block $quotesDone
          (loop $quote
            (br_if $quotesDone (i64.eqz (local.get $q)))
            (local.set $bit (i32.wrap_i64 (i64.ctz (local.get $q))))
            (local.set $below (i64.and (local.get $nv) (i64.sub (i64.shl (i64.const 1) (i64.extend_i32_u (local.get $bit))) (i64.const 1))))
            (local.set $last
              (select
                (local.get $lastNV)
                (i32.sub (i32.add (local.get $base) (i32.const 63)) (i32.wrap_i64 (i64.clz (local.get $below))))
                (i64.eqz (local.get $below))))
            (local.set $at (i32.add (local.get $base) (local.get $bit)))
            (if (i32.and
                  (i32.lt_s (local.get $last) (local.get $open))
                  (i32.le_u (i32.sub (i32.sub (local.get $at) (local.get $open)) (i32.const 4)) (i32.const 252)))
              (then
                ;; a value, unless a colon follows (after white space): then it is a key, taken but not recorded
                (if (i32.eqz (call $colonAfter (i32.add (local.get $at) (i32.const 1)) (local.get $length)))
                  (then
                    (i64.store offset=4521984 (i32.mul (local.get $quotes) (i32.const 12))
                      (i64.or (i64.extend_i32_u (local.get $open)) (i64.shl (i64.extend_i32_u (local.get $at)) (i64.const 32))))
                    ;; and the automaton's state after the value's last character
                    (i32.store offset=4521992 (i32.mul (local.get $quotes) (i32.const 12))
                      (i32.load16_u offset=327680 (i32.shl (i32.sub (local.get $at) (i32.const 1)) (i32.const 1))))
                    (local.set $quotes (i32.add (local.get $quotes) (i32.const 1)))))
                (local.set $open (i32.const -1)))
              (else (local.set $open (i32.add (local.get $at) (i32.const 1)))))
            (local.set $q (i64.and (local.get $q) (i64.sub (local.get $q) (i64.const 1))))
            (br $quote)))
        (if (i64.ne (local.get $nv) (i64.const 0))
          (then (local.set $lastNV (i32.sub (i32.add (local.get $base) (i32.const 63)) (i32.wrap_i64 (i64.clz (local.get $nv)))))))

        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $block)))
    (i32.store (i32.const 12) (local.get $quotes))
    ;; the end closes the runs that reach it (only a text that fills its last block leaves one open)
    (if (i32.ge_u (local.get $b64Carry) (i32.const 16))
      (then (call $run (i32.const 1) (i32.sub (local.get $length) (local.get $b64Carry)) (local.get $length))))
    (if (i32.ge_u (local.get $hexCarry) (i32.const 16))
      (then (call $run (i32.const 2) (i32.sub (local.get $length) (local.get $hexCarry)) (local.get $length)))))
)
