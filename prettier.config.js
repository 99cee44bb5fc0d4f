// Prettier's settings, chosen to match how the tree was already written by hand: of the widths
// measured (120-180), 145 with single quotes and trailing commas everywhere reformatted the
// fewest files and lines. Markdown and YAML are left out in .prettierignore (see why there).
/** @type {import('prettier').Config} */
export default {
  printWidth: 145,
  singleQuote: true,
  trailingComma: 'all',
};
