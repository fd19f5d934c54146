// Build the front end into cpms_lab/labextension/ (not in git) with @jupyterlab/builder.
//
// The builder needs JupyterLab's core package.json (which packages are shared
// singletons, at which versions). @jupyterlab/core-meta ships exactly that
// file from npm, so the build needs no Python and no network: it is copied to
// a temporary folder as package.json, where the builder looks for it.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const core = mkdtempSync(join(tmpdir(), 'cpms-lab-core-'));
try {
  copyFileSync(require.resolve('@jupyterlab/core-meta/core.package.json'), join(core, 'package.json'));
  const builder = require.resolve('@jupyterlab/builder/lib/build-labextension.js');
  const args = [builder, '--core-path', core, ...process.argv.slice(2), '.'];
  const run = spawnSync(process.execPath, args, { stdio: 'inherit' });
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(core, { recursive: true, force: true });
}
