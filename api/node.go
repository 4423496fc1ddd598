package api

import (
	"net"
	"path"
	"strings"
)

// Limits of the fields of AddNodeRequest.
const (
	MaxHostLen     = 253
	MaxUserLen     = 32
	MaxPathLen     = 4096
	MaxGitURLLen   = 1024
	MaxGitRefLen   = 255
	DefaultSSHPort = 22
	DefaultBranch  = "main"
)

// Validate checks every field of an add-node request (nothing
// from a request reaches a shell unchecked) and fills in the defaults:
// ssh_port 22, git_branch main, hive_port 9200. Errors are INVALID_REQUEST
// naming the field; the value is not echoed.
//
//   - node_name: DNS-safe, at most 63 characters, not "local";
//   - ssh_host: a host name (RFC 1123 labels) or an IP address;
//   - ssh_port, hive_port: 1 to 65535;
//   - ssh_user: empty (the queen's user) or a POSIX user name;
//   - ssh_key_path: empty (ssh-agent and the default keys) or an absolute,
//     clean path;
//   - git_repo_url: empty, an http(s)/ssh/git/file URL, user@host:path, or
//     an absolute path, never starting with "-";
//   - git_branch: a git branch name of [A-Za-z0-9._/-];
//   - install_path: an absolute, clean path other than "/".
func (r *AddNodeRequest) Validate() *Error {
	if e := ValidateNodeName(r.Name); e != nil {
		return renameField(e, "node_name")
	}
	if r.Name == LocalNode {
		return InvalidField("node_name", "%q is the built-in local node; it needs no registration", LocalNode)
	}
	if r.Name == AutoNode {
		return InvalidField("node_name", "%q asks the queen to choose a node; it cannot name one", AutoNode)
	}
	if r.SSHPort == 0 {
		r.SSHPort = DefaultSSHPort
	}
	if r.HivePort == 0 {
		r.HivePort = DefaultHivePort
	}
	if r.GitBranch == "" {
		r.GitBranch = DefaultBranch
	}
	if e := ValidateHost("ssh_host", r.SSHHost); e != nil {
		return e
	}
	if r.SSHPort < 1 || r.SSHPort > 65535 {
		return InvalidField("ssh_port", "a port is between 1 and 65535")
	}
	if r.HivePort < 1 || r.HivePort > 65535 {
		return InvalidField("hive_port", "a port is between 1 and 65535")
	}
	if r.SSHUser != "" && !posixUser(r.SSHUser) {
		return InvalidField("ssh_user", "a user name has at most %d letters, digits, '_', '.' and '-', and does not start with '-' or a digit", MaxUserLen)
	}
	if r.SSHKeyPath != "" {
		if e := ValidateAbsPath("ssh_key_path", r.SSHKeyPath); e != nil {
			return e
		}
	}
	if r.GitRepoURL != "" && !gitURL(r.GitRepoURL) {
		return InvalidField("git_repo_url", "a git repository is an https://, ssh://, git:// or file:// URL, user@host:path, or an absolute path (at most %d bytes, no spaces)", MaxGitURLLen)
	}
	if !gitBranch(r.GitBranch) {
		return InvalidField("git_branch", "a branch name has letters, digits, '.', '_', '-' and '/' only (at most %d), without '..' or a leading '-'", MaxGitRefLen)
	}
	if r.InstallPath == "" {
		return InvalidField("install_path", "an install path is required (where rbee lives on the node, e.g. /opt/rbee)")
	}
	if e := ValidateAbsPath("install_path", r.InstallPath); e != nil {
		return e
	}
	if r.InstallPath == "/" {
		return InvalidField("install_path", "the install path must not be /")
	}
	return nil
}

// Node returns the registry row the request describes (status unknown).
func (r *AddNodeRequest) Node() Node {
	return Node{Name: r.Name, SSHHost: r.SSHHost, SSHPort: r.SSHPort, SSHUser: r.SSHUser, SSHKeyPath: r.SSHKeyPath,
		GitRepoURL: r.GitRepoURL, GitBranch: r.GitBranch, InstallPath: r.InstallPath, HivePort: r.HivePort,
		Status: NodeUnknown, Tunnel: r.Tunnel}
}

// renameField reports a node name problem under another field name.
func renameField(e *Error, field string) *Error {
	msg, _ := strings.CutPrefix(e.Message, "invalid node: ")
	return InvalidField(field, "%s", msg)
}

// ValidateHost checks a host name (RFC 1123: dot-separated labels of
// letters, digits and inner hyphens, at most 63 each and 253 in all) or an
// IPv4 or IPv6 address (without brackets).
func ValidateHost(field, host string) *Error {
	if host == "" {
		return InvalidField(field, "a host name or IP address is required")
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	bad := InvalidField(field, "a host is a DNS name (letters, digits, inner hyphens, dots; at most %d) or an IP address", MaxHostLen)
	if len(host) > MaxHostLen {
		return bad
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return bad
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad
			}
		}
	}
	return nil
}

// ValidateAbsPath checks a path that must be absolute and clean (no "..",
// "//" or trailing "/"), without control characters, at most 4096 bytes.
func ValidateAbsPath(field, p string) *Error {
	switch {
	case len(p) > MaxPathLen:
		return InvalidField(field, "a path has at most %d bytes", MaxPathLen)
	case !path.IsAbs(p):
		return InvalidField(field, "the path must be absolute")
	case path.Clean(p) != p:
		return InvalidField(field, "the path must be clean (no '..', '//', '.' or trailing '/')")
	case hasControl(p):
		return InvalidField(field, "the path must not contain control characters")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// posixUser reports a portable user name: [A-Za-z_][A-Za-z0-9_.-]*, at
// most 32 bytes (a trailing '$', allowed by some systems, is not).
func posixUser(u string) bool {
	if len(u) > MaxUserLen {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case (c >= '0' && c <= '9' || c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return u != ""
}

// gitURL reports a repository address git accepts and no shell or git
// option could misread.
func gitURL(u string) bool {
	if len(u) > MaxGitURLLen || strings.HasPrefix(u, "-") || hasControl(u) || strings.ContainsAny(u, " \t\\'\"`$;&|<>") {
		return false
	}
	if path.IsAbs(u) {
		return true
	}
	for _, scheme := range []string{"https://", "http://", "ssh://", "git://", "file://"} {
		if rest, ok := strings.CutPrefix(u, scheme); ok {
			if scheme == "file://" {
				return path.IsAbs(rest)
			}
			host, _, _ := strings.Cut(rest, "/")
			return host != "" && !strings.HasPrefix(host, "-")
		}
	}
	// scp-like: [user@]host:path
	hostPart, p, ok := strings.Cut(u, ":")
	if !ok || p == "" || strings.Contains(hostPart, "/") {
		return false
	}
	if user, host, ok := strings.Cut(hostPart, "@"); ok {
		if !posixUser(user) {
			return false
		}
		hostPart = host
	}
	return ValidateHost("", hostPart) == nil
}

// gitBranch reports a branch name that git accepts (check-ref-format's
// rules, restricted to a safe alphabet).
func gitBranch(b string) bool {
	if b == "" || len(b) > MaxGitRefLen || b[0] == '-' || b[0] == '/' || b[0] == '.' ||
		strings.HasSuffix(b, "/") || strings.HasSuffix(b, ".") || strings.HasSuffix(b, ".lock") ||
		strings.Contains(b, "..") || strings.Contains(b, "//") || strings.Contains(b, "/.") {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}
