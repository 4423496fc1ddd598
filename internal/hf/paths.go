package hf

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"rbee/api"
)

// maxNameLen bounds one path component.
const maxNameLen = 200

// safeName reports whether s is a harmless path component: letters, digits,
// '.', '_' and '-', not starting with '.', at most maxNameLen bytes.
func safeName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// safePath reports whether every component of a slash-separated path is
// safe (so it cannot climb out of a folder or hide a file).
func safePath(p string) bool {
	if p == "" || len(p) > 4*maxNameLen {
		return false
	}
	for _, s := range strings.Split(p, "/") {
		if !safeName(s) {
			return false
		}
	}
	return true
}

// LocalPath is where a file of the hub is stored under modelsDir:
// modelsDir/hf/ORG/REPO/NAME. Names that could leave modelsDir (.., absolute
// paths, hidden or odd characters) are INVALID_REQUEST.
func LocalPath(modelsDir string, f File) (string, error) {
	if err := validRepo(f.Repo); err != nil {
		return "", err
	}
	if !safePath(f.Name) {
		return "", api.InvalidField("model_ref", "the file name %q cannot be stored safely (letters, digits, '.', '_' and '-' only, no hidden files)", f.Name)
	}
	root, err := filepath.Abs(modelsDir)
	if err != nil {
		return "", fmt.Errorf("models folder %s: %w", modelsDir, err)
	}
	p := filepath.Join(root, "hf", filepath.FromSlash(f.Repo), filepath.FromSlash(f.Name))
	rel, err := filepath.Rel(root, p)
	if err != nil || !filepath.IsLocal(rel) {
		return "", api.InvalidField("model_ref", "the file name %q leaves the models folder", f.Name)
	}
	return p, nil
}

// DiskFree is the space an unprivileged user may fill on dir's file system.
func DiskFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
