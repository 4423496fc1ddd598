package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SmallDisk mounts a tmpfs of size bytes on a new folder and returns the
// folder: a real file system that fills up, for tests of a full disk. It
// is unmounted at cleanup. Mounting needs root; the test is skipped, with
// the reason, when the process is not root or the mount fails (a container
// without CAP_SYS_ADMIN, say).
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill up needs root")
	}
	dir := filepath.Join(t.TempDir(), "small-disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("creating the mount point: %v", err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10)+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("mounting a %d-byte tmpfs failed (%v: %s); skipping the full-disk test", size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// A file still open keeps it busy: detach it so nothing lingers.
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				t.Errorf("unmounting the tmpfs at %s: %v: %s; %v: %s", dir, err, out, err2, out2)
			}
		}
	})
	return dir
}
