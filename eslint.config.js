// ESLint for src/ and test/: typescript-eslint's recommended and type-aware rules (the types come
// from tsconfig.test.json, which covers both trees), and no stylistic rules: layout is Prettier's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'src/config/policy-validator.gen.ts',
      'src/leak/scan-wasm.gen.ts',
      'dist/',
      'coverage/',
      '.tap/',
      'node_modules/',
      'bench/',
      'scripts/',
      'deploy/',
      '*.js',
      '*.cjs',
      '*.mjs',
    ],
  },
  {
    files: ['src/**/*.ts', 'test/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Only the command layer decides when the process ends; a library module that exits skips
      // the audit flush and the graceful close (undici bans it in its sources the same way).
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'exit', message: 'return an exit code to src/cli.ts (or src/commands/) instead' },
      ],
      // A leading underscore marks a parameter or binding that is unused on purpose.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // Off: `async` is used for a uniform Promise-returning signature (the commands, tap's test
      // callbacks), where a throw must become a rejection; the rule would have it removed.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // tap tracks the subtests that t.test() returns and awaits them itself; the house style
      // leaves them un-awaited at the top level. Any other promise must still be handled.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: '@tapjs/test', name: 'test' }] },
      ],
      // Off in tests: they read parsed JSON (responses, audit and log records) field by field on
      // purpose; a type for each would add casts without catching anything.
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['src/cli.ts', 'src/commands/**/*.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
);
