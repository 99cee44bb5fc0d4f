import { readFileSync } from 'node:fs';
import t from 'tap';
import { loadPolicy } from '../../src/config/load.js';
import { policySchema } from '../../src/config/schema.js';
import { DEFAULT_LIMITS } from '../../src/config/types.js';

type SchemaNode = Record<string, unknown>;
const schema = policySchema as unknown as SchemaNode;

function resolveRef(node: SchemaNode): SchemaNode {
  const ref = node.$ref;
  if (typeof ref !== 'string') return node;
  return ref
    .slice(2)
    .split('/')
    .reduce<SchemaNode>((at, key) => at[key] as SchemaNode, schema);
}

/** Every (path, property schema) pair in the schema, following $defs once. */
function properties(node: SchemaNode, path: string, out: [string, SchemaNode][]): [string, SchemaNode][] {
  for (const [name, child] of Object.entries((node.properties as Record<string, SchemaNode> | undefined) ?? {})) {
    out.push([`${path}.${name}`, child]);
    properties(child, `${path}.${name}`, out);
    properties((child.items as SchemaNode | undefined) ?? {}, `${path}.${name}[]`, out);
  }
  return out;
}

const everyProperty = [
  ...properties(schema, '', []),
  ...Object.entries(schema.$defs as Record<string, SchemaNode>).flatMap(([name, def]) => properties(def, `$defs.${name}`, [])),
];

t.test('every property has a description for the README', async (t) => {
  t.ok(everyProperty.length > 50, `found ${everyProperty.length} properties`);
  for (const [path, node] of everyProperty) {
    const description = node.description ?? resolveRef(node).description;
    t.type(description, 'string', path);
    t.ok(String(description).length >= 10, `${path} has a real description`);
  }
});

t.test('every object forbids unknown fields', async (t) => {
  const objects: [string, SchemaNode][] = [['', schema], ...Object.entries(schema.$defs as Record<string, SchemaNode>)];
  for (const [path, node] of everyProperty) if (node.type === 'object') objects.push([path, node]);
  for (const [path, node] of objects) {
    if (node.type !== 'object') continue;
    t.not(node.additionalProperties ?? 'missing', 'missing', `${path || 'root'} sets additionalProperties`);
    t.not(node.additionalProperties, true, `${path || 'root'} does not allow anything`);
  }
});

t.test('the schema defaults are the code defaults', async (t) => {
  const limits = (schema.properties as Record<string, SchemaNode>).limits!.properties as Record<string, SchemaNode>;
  t.same(Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, v.default])), DEFAULT_LIMITS);
  const overrides = (schema.$defs as Record<string, SchemaNode>).limitOverrides!.properties as Record<string, SchemaNode>;
  t.same(Object.keys(overrides), Object.keys(DEFAULT_LIMITS), 'tools and rules may override every limit');
  t.same(
    Object.values(overrides).filter((v) => 'default' in v),
    [],
    'overrides stay partial',
  );
});

t.test('the example policy is valid', async (t) => {
  const loaded = loadPolicy('config/policy.example.yaml');
  t.same(Object.keys(loaded.doc.tools), ['web-fetch', 'pip-install']);
  t.same(loaded.doc.network.allow_private_cidrs, ['127.0.0.2/32']);
  t.same(loaded.doc.tools['web-fetch']!.secrets, [], 'no secret that needs the environment is granted');
  t.equal(loaded.doc.secrets.github!.placeholder, '__sluice_secret_github__');
  t.match(readFileSync('config/policy.example.yaml', 'utf8'), /local trial only/);
});
