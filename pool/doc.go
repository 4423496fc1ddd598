// Package pool is the hive: the pool daemon that runs on every node
// (docs/architecture.md). It keeps the node's model catalog, checks RAM and backends before
// loading, spawns workers as child processes and tracks them.
//
// # Running it
//
// `rbee hive` is [Main]. A program embeds a hive with [New] and [Hive.Run],
// or mounts [Hive.Handler] in its own server and calls [Hive.Close] at the
// end. Either way the hive runs workers as processes of the rbee binary
// (Config.Binary): `<binary> worker --model PATH --model-ref REF --backend
// cpu --device 0 --host H --port P --callback-url URL --worker-id ID`, with
// the worker's token in RBEE_API_KEY, never on the command line.
//
// # Parts
//
//   - [Catalog]: the table models of <home>/models.db (SQLite, WAL). A
//     corrupt file is an error ([ErrCatalogCorrupt]), never recreated.
//   - Preflight: the requested backend and device must exist (cpu always
//     does; GPUs come from [DetectDevices] or Config.Devices), and the
//     model's file size × [RAMFactor] must fit the available memory
//     ([MemAvailableMB], or Config.FakeMemoryMB).
//   - The registry: in memory only, so it is empty after a restart.
//     [Worker] is a handle on one worker process (WaitUntilReady, Ping,
//     Close, Pid, Exited).
//   - Spawning: a free port from Config.WorkerPortStart, a new id and token,
//     the process, and its first health answer; a worker that finds its port
//     taken exits with [ExitPortInUse] and the hive tries the next port.
//   - The monitor, owned by Run: a health check of every worker each
//     Config.HealthInterval (3 failures in a row: removed and killed), and
//     workers idle for Config.IdleTimeout stopped. A worker process that
//     exits is removed at once.
//   - Downloads ([Hive.DownloadModel], [Download]): hf: models come from
//     the Hugging Face hub (Config.HFEndpoint, $HF_ENDPOINT) into
//     <home>/models/hf/ORG/REPO/FILE through a resumable, verified transfer
//     (package internal/hf), one per model however many ask, and are then
//     added to the catalog. A spawn never downloads: an hf: model missing
//     from the catalog is MODEL_NOT_FOUND until it has been downloaded.
//   - Shutdown (ctx end, SIGTERM, POST /v1/admin/shutdown): every worker in
//     parallel gets its admin shutdown, SIGTERM after 5 s and SIGKILL at
//     10 s; running downloads are cancelled (their partial files stay for a
//     resume); the registry is cleared; the catalog stays.
//
// # HTTP API
//
// GET /v1/health (public), POST /v1/workers/spawn, POST /v1/workers/ready
// (the hive's token or the named worker's), GET /v1/workers/list, POST
// /v1/workers/shutdown, GET /v1/models, POST /v1/models/download, GET
// /v1/models/download/progress?id= (SSE), GET /v1/logs?follow=&lines= (SSE
// of the hive's own log, Config.LogFile or <home>/logs/hive*.log, and of
// every <home>/logs/worker-<id>.log) and POST /v1/admin/shutdown; bodies
// and errors are the types of package api.
package pool
