"""The chaos soak (`make soak`, `python -m tests.soak --minutes 3`): one real tree, faults for minutes.

What it drives
--------------
One mdwd on the embedded defaults (simulated market, the ~170-symbol
universe, default batch sizes, all six workers), with a config file that
overrides only what a soak must: its own temporary state_dir, a free API port,
an API token, and shorter supervisor timings (settings.Timings; printed at the
start). Then, for the whole duration, at random from one seed (printed, so a
failure can be replayed with --seed):

- SIGKILL, SIGSTOP (SIGCONT 0.5-8 s later, or the supervisor kills it first),
  SIGSEGV and SIGTERM of random workers, and of the API's serving processes
  (granian's `mdw:api.http` children of its manager);
- `mdwctl restart|stop|start NAME`, and `POST /api/workers/NAME/restart`;
- reloads (SIGHUP or `mdwctl reload`) of good configs (one worker's interval
  switched) and of broken ones (bad TOML, an unknown key, a wrong type,
  non-UTF-8 bytes, a wrong shape such as `supervisor = 1`);
- an exclusive lock on the SQLite file held 2-6 s (BEGIN EXCLUSIVE);
- one hung symbol: a reload setting `[provider] sim_hang_symbols` for about a
  minute, then clearing it;
- API traffic from a thread the whole time (traffic.py): good requests to
  every endpoint of README's "HTTP API" table, mixed with junk.
The catalog is in faults.py; `--skip CLASS|NAME,...` turns faults off and
`--only` keeps just the ones named (`--list-faults` prints them), so the other
checks can run while a known bug still kills the tree.

What it checks, and why
-----------------------
- dataset gaps: every dataset must be rewritten within its writer's limit
  after its last write or the last fault that hit its writer; ledger.py's
  docstring explains the accounting. A scanner that stops writing without
  cause is exactly the silent hang this service exists to prevent;
- no HTTP 5xx other than /health's 503 (README: errors are 400/404/405 JSON);
- mdwd's own fds and RSS do not grow between the first minute and the last
  (a supervisor must run for months): fewest in each, FD_TOLERANCE and
  RSS_TOLERANCE_MB in runner.py;
- no zombie among mdwd's descendants older than 5 s (monitor.py);
- a broken reload keeps the tree: mdwd alive, `mdwctl reload` exits 2, no
  worker restarted for "config" (README: "a bad config is logged and the
  running tree is kept"); a good one is applied (the interval shows in status);
- the final shutdown: just before it a reload adds a probe worker that ignores
  SIGTERM; then SIGTERM, and a second SIGTERM 0.6 s later. mdwd must exit 0
  within stop_timeout + 3 s, and kill the probe only after its stop_timeout
  (README: a second SIGINT kills what is left; a second SIGTERM must not);
- nothing of the tree left: no process with the tree's tag alive 2 s after
  mdwd exits, and no process of the tree, zombie or not, re-parented to the
  soak (it is a subreaper, so what mdwd leaves unreaped comes to it);
- mdwd itself never dies while the soak drives it;
- PRAGMA integrity_check is ok at the end.
It prints each violation with its time and context, the figures, and PASS or
FAIL (exit 1). Exit 2 means the soak itself failed: not a finding.
"""
