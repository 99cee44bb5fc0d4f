// The layout check (`npm run lint` runs `depcruise src test`): which folder may import which.
// src/policy/ is the pure decision core: it must stay testable without sockets, files or the
// proxy, and src/config/ validates policies without depending on how they are decided.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle in src/ makes load order matter and the layers meaningless.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'config-not-policy',
      severity: 'error',
      comment: 'src/config/ validates the policy document; the decisions in src/policy/ build on it, not the reverse.',
      from: { path: '^src/config/' },
      to: { path: '^src/policy/' },
    },
    {
      name: 'no-test-from-outside',
      severity: 'error',
      comment: 'Only tests may import test helpers.',
      from: { pathNot: '^test/' },
      to: { path: '^test/' },
    },
    {
      name: 'policy-is-pure',
      severity: 'error',
      comment: 'src/policy/ decides from values it is given: no network, DNS, TLS, files or HTTP, and none of the layers that do them.',
      from: { path: '^src/policy/' },
      to: {
        dependencyTypes: ['core'],
        path: '^(node:)?(net|tls|dns|dns/promises|fs|fs/promises|http|https|http2|dgram|child_process)$',
      },
    },
    {
      name: 'policy-not-io-layers',
      severity: 'error',
      comment: 'src/policy/ must not reach into the proxy, the app wiring, the commands or observability.',
      from: { path: '^src/policy/' },
      to: { path: '^src/(proxy|app|commands|observe)/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import that does not resolve would fail at run time.',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count too: a layer that needs another's types depends on it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.test.json' },
    // Packages that name their entry points in package.json "exports" (the MCP SDK's subpaths).
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'] },
  },
};
