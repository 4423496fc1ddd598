// Package pool is the hive: the pool daemon that runs on every node (DESIGN
// §1). It keeps the node's model catalog, checks RAM and backends before
// loading, spawns workers as child processes and tracks them.
package pool
