// `--workers auto`: how many workers a machine gets, from its usable cores and its cgroup quota.
import t from 'tap';
import { autoWorkers } from '../../src/app/cluster.js';

t.test('auto is one process on 2 cores or fewer, one worker per usable core above', async (t) => {
  t.equal(autoWorkers(1, null), 1);
  t.equal(autoWorkers(2, null), 1);
  t.equal(autoWorkers(3, null), 3);
  t.equal(autoWorkers(16, null), 16);
});

t.test('a cgroup CPU quota caps auto below the cores the machine has', async (t) => {
  t.equal(autoWorkers(64, 2), 1, 'a 2-CPU pod on a 64-core node is a 2-core machine');
  t.equal(autoWorkers(64, 4), 4);
  t.equal(autoWorkers(64, 3.5), 3, 'a part of a CPU is not a core a worker can have');
  t.equal(autoWorkers(4, 8), 4, 'a quota above the cores leaves the cores');
  t.equal(autoWorkers(8, 0.5), 1);
});

t.test('auto on this machine is a whole number of at least 1', async (t) => {
  const n = autoWorkers();
  t.ok(Number.isInteger(n) && n >= 1);
});
