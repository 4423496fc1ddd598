package sshx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
)

// Upload writes r to remotePath with the permission bits of mode (0600
// when mode is 0). The bytes stream through a session into "cat" (no SFTP
// subsystem needed) in a temporary file created under umask 077, so
// nothing is ever readable by others before the final chmod; the file is
// then checked for size, given its mode and renamed over remotePath, so a
// reader never sees half a file and a running binary can be replaced.
// Missing parent directories are created. A relative remotePath is
// relative to the remote user's home directory.
//
// This is the way to hand a secret (a hive token) to a node: Upload it
// with mode 0600 and point the process at the file.
func (c *Client) Upload(ctx context.Context, r io.Reader, remotePath string, mode fs.FileMode) error {
	if remotePath == "" {
		return errors.New("sshx: Upload: empty remote path")
	}
	if err := checkWord("remote path", remotePath); err != nil {
		return err
	}
	if mode == 0 {
		mode = 0o600
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := remotePath + ".rbee-upload-" + hex.EncodeToString(rnd[:])
	qtmp := quotePath(tmp)

	write := "umask 077 && cat > " + qtmp
	if dir := path.Dir(remotePath); dir != "." && dir != "/" {
		write = "mkdir -p " + quotePath(dir) + " && " + write
	}
	cr := &countReader{r: r}
	if err := c.shell(ctx, "upload", write, cr, nil); err != nil {
		c.removeQuietly(tmp)
		return fmt.Errorf("sshx: upload to %s on %s: %w", remotePath, c.t, err)
	}
	finish := "n=$(wc -c < " + qtmp + " | tr -d ' ') && [ \"$n\" = " + strconv.FormatInt(cr.n, 10) + " ]" +
		" && chmod " + fmt.Sprintf("%04o", mode.Perm()) + " " + qtmp +
		" && mv -f " + qtmp + " " + quotePath(remotePath) +
		" || { rm -f " + qtmp + "; exit 1; }"
	if err := c.shell(ctx, "upload", finish, nil, nil); err != nil {
		return fmt.Errorf("sshx: upload to %s on %s: %w", remotePath, c.t, err)
	}
	return nil
}

// UploadFile copies a local file to remotePath, with mode, or with the
// local file's permission bits when mode is 0.
func (c *Client) UploadFile(ctx context.Context, localPath, remotePath string, mode fs.FileMode) error {
	f, err := os.Open(localPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if mode == 0 {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		mode = st.Mode().Perm()
	}
	return c.Upload(ctx, f, remotePath, mode)
}

// removeQuietly deletes a leftover temporary file, best effort.
func (c *Client) removeQuietly(remotePath string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	_ = c.shell(ctx, "rm", "rm -f "+quotePath(remotePath), nil, nil)
}

// shell runs a shell line built inside this package from quoted words.
func (c *Client) shell(ctx context.Context, name, script string, stdin io.Reader, stdout io.Writer) error {
	return c.runScript(ctx, Cmd{Argv: []string{name}, Stdout: stdout}, script, stdin)
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
