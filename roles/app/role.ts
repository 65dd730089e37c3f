/** The app role: runs the application code of the current app build. */
import type { Role } from '../../lib/process/role.js'

export const appRole: Role = {
  name: 'app',
  summary: 'runs the application code of the current app build, multi-process and multi-threaded',
  notYet: [
    'loading and running the application code of the current app build',
    'worker threads in each child for CPU-bound work',
  ],
  forks: true,
  // The seed pushes the current app build on every (re)connect; running it is not built yet.
  subscribe: () => ({ builds: true }),
}
