package main

// FerretDB v1.24's SQLite backend creates each collection's unique _id index on
// the expression `_ferretdb_sjson->"_id"`, but pushes `{_id: <string|ObjectId>}`
// filters down as `_ferretdb_sjson->'$._id' = ?`. SQLite matches expression
// indexes by their text, so the index is never used: every lookup, update and
// delete by _id scans the whole table, and the services slow down as their
// collections grow (a find by _id took 2.4 ms at 2,000 documents and an update
// 8.5 ms, against about 1 ms at 100).
//
// The indexer below adds, to every collection table it sees, a plain
// (non-unique) index on the exact expression the queries use. It changes no
// behaviour (FerretDB's own index still enforces uniqueness) and only
// makes those lookups O(log n). A database file is learnt of when FerretDB opens
// a connection to it; the indexer then checks it every interval until the file
// is gone (a dropped database).

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
)

const (
	idExpression = `_ferretdb_sjson->'$._id'`
	indexSuffix  = "_mindstream_id"
)

type idIndexer struct {
	logger *slog.Logger
	mu     sync.Mutex
	files  map[string]bool  // database files FerretDB has opened
	seen   map[string]stamp // what a file looked like when it was last found complete
}

// stamp identifies a version of a database file: in WAL mode every write
// (a new table included) changes the -wal file's size or time.
type stamp struct {
	walSize, mainSize int64
	walTime, mainTime time.Time
}

func stampOf(path string) (stamp, error) {
	main, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	s := stamp{mainSize: main.Size(), mainTime: main.ModTime()}
	if wal, err := os.Stat(path + "-wal"); err == nil {
		s.walSize, s.walTime = wal.Size(), wal.ModTime()
	}
	return s, nil
}

func newIDIndexer(logger *slog.Logger) *idIndexer {
	ix := &idIndexer{logger: logger, files: map[string]bool{}, seen: map[string]stamp{}}
	sqlite.RegisterConnectionHook(func(_ sqlite.ExecQuerierContext, dsn string) error {
		if path := dsnPath(dsn); path != "" {
			ix.mu.Lock()
			ix.files[path] = true
			ix.mu.Unlock()
		}
		return nil
	})
	return ix
}

// dsnPath is the file a FerretDB connection string points at ("" for
// in-memory databases and our own connections, which carry a marker).
func dsnPath(dsn string) string {
	if strings.Contains(dsn, "mindstream_indexer") || strings.Contains(dsn, "mode=memory") {
		return ""
	}
	rest := strings.TrimPrefix(dsn, "file:")
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i]
	}
	if p, err := url.PathUnescape(rest); err == nil {
		rest = p
	}
	if !strings.HasSuffix(rest, ".sqlite") {
		return ""
	}
	return rest
}

func (ix *idIndexer) run(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			ix.sweep(ctx)
		}
	}
}

// sweep indexes the files written since they were last found complete.
// Our connection is opened and closed per file: hundreds of test databases
// must not each hold an open file of ours.
func (ix *idIndexer) sweep(ctx context.Context) {
	ix.mu.Lock()
	paths := make([]string, 0, len(ix.files))
	for p := range ix.files {
		paths = append(paths, p)
	}
	ix.mu.Unlock()

	for _, path := range paths {
		before, err := stampOf(path)
		if err != nil { // dropped database
			ix.mu.Lock()
			delete(ix.files, path)
			ix.mu.Unlock()
			delete(ix.seen, path)
			continue
		}
		if ix.seen[path] == before {
			continue // nothing written since it was last complete
		}
		if err := indexFile(ctx, path); err != nil {
			if ctx.Err() == nil {
				ix.logger.Debug("id indexer", "file", path, "error", err)
			}
			continue // tried again next sweep
		}
		// Our own CREATE INDEX changes the stamp: take it after the work, so an
		// unchanged file is skipped from the next sweep on.
		if after, err := stampOf(path); err == nil {
			ix.seen[path] = after
		}
	}
}

func indexFile(ctx context.Context, path string) error {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("mindstream_indexer", "1")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return ensureIDIndexes(ctx, db)
}

// ensureIDIndexes adds the missing _id expression indexes of one database
// file. Reads only, unless something is missing.
func ensureIDIndexes(ctx context.Context, db *sql.DB) error {
	tables, err := strings1(ctx, db, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // a database FerretDB has not written to yet
		}
		return err
	}
	have, err := strings1(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'index'`)
	if err != nil {
		return err
	}
	existing := make(map[string]bool, len(have))
	for _, n := range have {
		existing[n] = true
	}
	for _, t := range tables {
		name := t + indexSuffix
		if existing[name] {
			continue
		}
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (%s)`, name, t, idExpression)
		if _, err := db.ExecContext(ctx, q); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue // dropped between the two statements
			}
			return err
		}
	}
	return nil
}

func strings1(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
