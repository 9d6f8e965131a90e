// bboltoracle is the test suite's independent reference: Go's own bbolt (Debian's 1.3.6) and Go's
// own compress/* and encoding/json, so our Rust code is checked against the implementations that
// etcd and etcd-backup-restore actually use. Test-only; see docs/testing.md for the interface.
//
// Build (offline, GOPATH mode): scripts/install-test-deps.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/lzw"
	"compress/zlib"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

const usage = `usage:
  bboltoracle check FILE
  bboltoracle stats FILE
  bboltoracle dump FILE
  bboltoracle compress gzip|zlib|lzw      (stdin -> stdout)
  bboltoracle decompress gzip|zlib|lzw    (stdin -> stdout)
  bboltoracle verify-snapshot FILE [DBOUT]  (a full snapshot object, as etcdbrctl restores it)
  bboltoracle reencode-delta              (stdin: delta JSON without hash trailer -> stdout)
`

// etcd-backup-restore writes .Z with compress/lzw, LSB order, literal width 8
// (pkg/compressor: LzwLiteralWidth).
const lzwLiteralWidth = 8

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "check":
		needArgs(3)
		limits()
		os.Exit(check(os.Args[2]))
	case "stats":
		needArgs(3)
		os.Exit(stats(os.Args[2]))
	case "dump":
		needArgs(3)
		os.Exit(dump(os.Args[2]))
	case "compress":
		needArgs(3)
		os.Exit(compress(os.Args[2]))
	case "decompress":
		needArgs(3)
		os.Exit(decompress(os.Args[2]))
	case "verify-snapshot":
		if len(os.Args) != 3 && len(os.Args) != 4 {
			needArgs(3)
		}
		dbOut := ""
		if len(os.Args) == 4 {
			dbOut = os.Args[3]
		}
		os.Exit(verifySnapshot(os.Args[2], dbOut))
	case "reencode-delta":
		needArgs(2)
		os.Exit(reencodeDelta())
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
}

func needArgs(n int) {
	if len(os.Args) != n {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
}

func openReadOnly(path string) (*bolt.DB, error) {
	// A timeout keeps us from hanging when a running etcd holds the flock.
	return bolt.Open(path, 0400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
}

// limits bounds what a check of a corrupt file may cost. bbolt 1.3.6 trusts page pointers: a
// cycle makes its page walk recurse and its cursors grow their stacks without end. The
// stack is capped at 64 MiB (a real tree is a few levels deep); with
// BBOLTORACLE_LIMIT_MB / BBOLTORACLE_LIMIT_SECONDS set, a watchdog exits 3 ("gave up") when
// the process uses more memory or time than that.
func limits() {
	debug.SetMaxStack(64 << 20)
	mb, _ := strconv.ParseUint(os.Getenv("BBOLTORACLE_LIMIT_MB"), 10, 64)
	secs, _ := strconv.ParseUint(os.Getenv("BBOLTORACLE_LIMIT_SECONDS"), 10, 64)
	if mb == 0 && secs == 0 {
		return
	}
	start := time.Now()
	go func() {
		var m runtime.MemStats
		for {
			time.Sleep(20 * time.Millisecond)
			runtime.ReadMemStats(&m)
			if mb > 0 && m.Sys > mb<<20 {
				fmt.Fprintf(os.Stderr, "gave up: memory %d MiB > %d MiB\n", m.Sys>>20, mb)
				os.Exit(3)
			}
			if secs > 0 && time.Since(start) > time.Duration(secs)*time.Second {
				fmt.Fprintf(os.Stderr, "gave up: time > %d s\n", secs)
				os.Exit(3)
			}
		}
	}()
}

// check: exit 0 when OK, 1 with errors, 2 when the file cannot be opened (or bbolt panicked
// while checking: Go's runtime exits 2 with "panic:" or "fatal error:" on stderr), 3 when
// it gave up at a limit (see limits).
func check(path string) int {
	db, err := openReadOnly(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open %s: %v\n", path, err)
		return 2
	}
	defer db.Close()
	count := 0
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			fmt.Println(e)
			count++
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "view %s: %v\n", path, err)
		return 2
	}
	if count == 0 {
		fmt.Println("OK")
		return 0
	}
	fmt.Printf("%d errors found\n", count)
	return 1
}

// stats prints, as one JSON line, what etcdutl snapshot status reports ("keys": every key of
// every top-level bucket, counted as its ForEach does; "size": tx.Size()) and "free_pages":
// the free-page count of the freelist bbolt loads, or rebuilds by walking every tree when the
// file has none synced (etcd's files: NoFreelistSync). A read-only DB loads it lazily, in
// Check, so Check runs first; its error count is "check_errors". Exit 0, 2 when it cannot
// open the file.
func stats(path string) int {
	db, err := openReadOnly(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open %s: %v\n", path, err)
		return 2
	}
	defer db.Close()
	var keys, size int64
	checkErrors := 0
	err = db.View(func(tx *bolt.Tx) error {
		for range tx.Check() {
			checkErrors++
		}
		size = tx.Size()
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			return b.ForEach(func(_, _ []byte) error {
				keys++
				return nil
			})
		})
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "stats %s: %v\n", path, err)
		return 2
	}
	fmt.Printf(`{"keys":%d,"size":%d,"free_pages":%d,"check_errors":%d}`+"\n",
		keys, size, db.Stats().FreePageN, checkErrors)
	return 0
}

// The dump format is hand-written (not encoding/json) so it is byte-exact by construction:
// standard base64 never needs escaping, and field order is fixed.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func writePath(w *bufio.Writer, path [][]byte) {
	w.WriteString(`{"path":[`)
	for i, p := range path {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteByte('"')
		w.WriteString(b64(p))
		w.WriteByte('"')
	}
	w.WriteString(`]`)
}

func dumpBucket(w *bufio.Writer, b *bolt.Bucket, path [][]byte) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		// v == nil marks a nested bucket; an empty value of a plain key is also possible, so ask
		// the bucket to tell the two apart.
		if v == nil {
			if child := b.Bucket(k); child != nil {
				writePath(w, path)
				fmt.Fprintf(w, `,"bucket":"%s","sequence":%d}`+"\n", b64(k), child.Sequence())
				sub := append(append([][]byte{}, path...), append([]byte{}, k...))
				dumpBucket(w, child, sub)
				continue
			}
		}
		writePath(w, path)
		fmt.Fprintf(w, `,"key":"%s","value":"%s"}`+"\n", b64(k), b64(v))
	}
}

func dump(path string) int {
	db, err := openReadOnly(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open %s: %v\n", path, err)
		return 2
	}
	defer db.Close()
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			writePath(w, nil)
			fmt.Fprintf(w, `,"bucket":"%s","sequence":%d}`+"\n", b64(name), b.Sequence())
			dumpBucket(w, b, [][]byte{append([]byte{}, name...)})
			return nil
		})
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "dump %s: %v\n", path, err)
		return 2
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "write: %v\n", err)
		return 2
	}
	return 0
}

func compress(kind string) int {
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	var wc io.WriteCloser
	switch kind {
	case "gzip":
		wc = gzip.NewWriter(out)
	case "zlib":
		wc = zlib.NewWriter(out)
	case "lzw":
		wc = lzw.NewWriter(out, lzw.LSB, lzwLiteralWidth)
	default:
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	if _, err := io.Copy(wc, bufio.NewReaderSize(os.Stdin, 1<<20)); err != nil {
		fmt.Fprintf(os.Stderr, "compress: %v\n", err)
		return 1
	}
	if err := wc.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "compress: %v\n", err)
		return 1
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "write: %v\n", err)
		return 1
	}
	return 0
}

func decompress(kind string) int {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	var r io.Reader
	switch kind {
	case "gzip":
		gr, err := gzip.NewReader(in)
		if err != nil {
			fmt.Fprintf(os.Stderr, "decompress: %v\n", err)
			return 1
		}
		r = gr
	case "zlib":
		zr, err := zlib.NewReader(in)
		if err != nil {
			fmt.Fprintf(os.Stderr, "decompress: %v\n", err)
			return 1
		}
		r = zr
	case "lzw":
		r = lzw.NewReader(in, lzw.LSB, lzwLiteralWidth)
	default:
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	if _, err := io.Copy(out, r); err != nil {
		fmt.Fprintf(os.Stderr, "decompress: %v\n", err)
		return 1
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "write: %v\n", err)
		return 1
	}
	return 0
}

// The structs below carry the same json tags as etcd's mvccpb.KeyValue / mvccpb.Event
// (api/mvccpb/kv.pb.go; clientv3.Event is a defined type over mvccpb.Event) and
// etcd-backup-restore's delta wrapper (pkg/snapshot/snapshotter: event, pkg/types: Event).
// Field order matters: encoding/json writes fields in declaration order.
type keyValue struct {
	Key            []byte `json:"key,omitempty"`
	CreateRevision int64  `json:"create_revision,omitempty"`
	ModRevision    int64  `json:"mod_revision,omitempty"`
	Version        int64  `json:"version,omitempty"`
	Value          []byte `json:"value,omitempty"`
	Lease          int64  `json:"lease,omitempty"`
}

// mvccpb.Event_EventType is an int32 enum without MarshalJSON: PUT=0, DELETE=1.
type mvccEvent struct {
	Type   int32     `json:"type,omitempty"`
	Kv     *keyValue `json:"kv,omitempty"`
	PrevKv *keyValue `json:"prev_kv,omitempty"`
}

type deltaEvent struct {
	EtcdEvent *mvccEvent `json:"etcdEvent"`
	Time      time.Time  `json:"time"`
}

// reencodeDelta re-encodes each event on its own and joins them the way the snapshotter
// does ('[' + events joined by ',' + ']'), which equals json.Marshal of the slice.
func reencodeDelta() int {
	in, err := ioutil.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "read: %v\n", err)
		return 1
	}
	var events []deltaEvent
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&events); err != nil {
		fmt.Fprintf(os.Stderr, "decode: %v\n", err)
		return 1
	}
	if dec.More() {
		fmt.Fprintln(os.Stderr, "decode: trailing data after the JSON array")
		return 1
	}
	var out bytes.Buffer
	for i := range events {
		b, err := json.Marshal(&events[i])
		if err != nil {
			fmt.Fprintf(os.Stderr, "encode: %v\n", err)
			return 1
		}
		if i == 0 {
			out.WriteByte('[')
		} else {
			out.WriteByte(',')
		}
		out.Write(b)
	}
	if len(events) == 0 {
		out.WriteString("[]")
	} else {
		out.WriteByte(']')
	}
	if _, err := os.Stdout.Write(out.Bytes()); err != nil {
		fmt.Fprintf(os.Stderr, "write: %v\n", err)
		return 1
	}
	return 0
}

// verifySnapshot reads a full snapshot object the way etcdbrctl's restorer does
// (pkg/snapshot/restorer makeDB, from v0.28): the codec chosen by the name's suffix through
// pkg/compressor's readers (gzip.NewReader: multistream, so a stream of several members is
// one stream), io.Copy into a file, then etcd's trailer rule: the size modulo 512 must be
// sha256.Size, the last 32 bytes are truncated away and must equal sha256 of the rest. Exit
// 0 with a JSON line when it holds, 1 when it does not, 4 for a codec Go cannot read (.zst).
// With DBOUT the database (trailer removed) is kept there. For gzip the JSON also counts the
// members (a second, single-member-at-a-time pass), so a test can tell it read several.
func verifySnapshot(path, dbOut string) int {
	fail := func(f string, a ...interface{}) int {
		fmt.Fprintf(os.Stderr, "verify-snapshot: "+f+"\n", a...)
		return 1
	}
	f, err := os.Open(path)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	var rc io.Reader = f
	codec := "none"
	switch {
	case strings.HasSuffix(path, ".gz"):
		codec = "gzip"
		gr, err := gzip.NewReader(f)
		if err != nil {
			return fail("gzip: %v", err)
		}
		rc = gr
	case strings.HasSuffix(path, ".zlib"):
		codec = "zlib"
		zr, err := zlib.NewReader(f)
		if err != nil {
			return fail("zlib: %v", err)
		}
		rc = zr
	case strings.HasSuffix(path, ".Z"):
		codec = "lzw"
		rc = lzw.NewReader(f, lzw.LSB, lzwLiteralWidth)
	case strings.HasSuffix(path, ".zst"):
		fmt.Fprintln(os.Stderr, "verify-snapshot: Go's standard library has no zstd reader")
		return 4
	}
	var db *os.File
	if dbOut != "" {
		db, err = os.OpenFile(dbOut, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0600)
	} else {
		db, err = ioutil.TempFile("", "verify-snapshot-")
		if err == nil {
			defer os.Remove(db.Name())
		}
	}
	if err != nil {
		return fail("%v", err)
	}
	defer db.Close()
	if _, err := io.Copy(db, rc); err != nil {
		return fail("%s: %v", codec, err)
	}
	off, err := db.Seek(0, io.SeekEnd)
	if err != nil {
		return fail("%v", err)
	}
	if off%512 != sha256.Size {
		return fail("snapshot missing hash: %d bytes", off)
	}
	if _, err := db.Seek(-sha256.Size, io.SeekEnd); err != nil {
		return fail("%v", err)
	}
	sha := make([]byte, sha256.Size)
	if _, err := io.ReadFull(db, sha); err != nil {
		return fail("failed to read sha from db %v", err)
	}
	if err := db.Truncate(off - sha256.Size); err != nil {
		return fail("%v", err)
	}
	if _, err := db.Seek(0, io.SeekStart); err != nil {
		return fail("%v", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, db); err != nil {
		return fail("%v", err)
	}
	dbSha := h.Sum(nil)
	if !reflect.DeepEqual(sha, dbSha) {
		return fail("expected sha256 %v, got %v", sha, dbSha)
	}
	members := 0
	if codec == "gzip" {
		if members, err = gzipMembers(path); err != nil {
			return fail("counting gzip members: %v", err)
		}
	}
	out, _ := json.Marshal(map[string]interface{}{
		"codec":        codec,
		"db_bytes":     off - sha256.Size,
		"sha256":       hex.EncodeToString(dbSha),
		"gzip_members": members,
	})
	fmt.Println(string(out))
	return 0
}

// gzipMembers counts the members of a gzip file the way compress/gzip documents it:
// Multistream(false), read one member, Reset on the same bufio.Reader for the next.
func gzipMembers(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		zr.Multistream(false)
		if _, err := io.Copy(ioutil.Discard, zr); err != nil {
			return n, err
		}
		n++
		if err := zr.Reset(br); err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, err
		}
	}
}
