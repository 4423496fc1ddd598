package hf

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"rbee/api"
)

// PreferredQuant is the quantization hf:ORG/REPO picks when the repository
// has it.
const PreferredQuant = "Q4_K_M"

// Resolve finds the file an hf: reference names:
//   - hf:ORG/REPO: the repository's Q4_K_M GGUF, else its smallest GGUF;
//   - hf:ORG/REPO:QUANT: the GGUF whose name carries that quantization
//     (case-insensitive: *.Q8_0.gguf, *-q8_0.gguf);
//   - hf:ORG/REPO/FILE.gguf: that file.
//
// A reference that matches no file is MODEL_NOT_FOUND listing the
// repository's GGUF files.
func (c *Client) Resolve(ctx context.Context, ref api.ModelRef) (File, error) {
	if ref.Provider != "hf" {
		return File{}, api.InvalidField("model_ref", "only hf: references are on Hugging Face")
	}
	repo, err := c.ListRepo(ctx, ref.Repo)
	if err != nil {
		return File{}, err
	}
	return Pick(repo.Files, ref)
}

// Pick chooses the file of ref among a repository's files (see Resolve).
func Pick(files []File, ref api.ModelRef) (File, error) {
	canon := ref.String()
	if ref.File != "" {
		for _, f := range files {
			if f.Name == ref.File {
				return f, nil
			}
		}
		return File{}, notFound(canon, files, fmt.Sprintf("repository %s has no file %s", ref.Repo, ref.File))
	}
	ggufs := candidates(files)
	if len(ggufs) == 0 {
		return File{}, notFound(canon, files, fmt.Sprintf("repository %s has no GGUF model file", ref.Repo))
	}
	if ref.Quant != "" {
		if f, ok := smallest(withQuant(ggufs, ref.Quant)); ok {
			return f, nil
		}
		return File{}, notFound(canon, files, fmt.Sprintf("repository %s has no %s GGUF file", ref.Repo, ref.Quant))
	}
	if f, ok := smallest(withQuant(ggufs, PreferredQuant)); ok {
		return f, nil
	}
	f, _ := smallest(ggufs)
	return f, nil
}

// shardName matches the parts of a split GGUF ("-00001-of-00003.gguf"),
// which one file cannot load.
var shardName = regexp.MustCompile(`(?i)-\d{5}-of-\d{5}\.gguf$`)

// candidates are the single-file GGUF models of a listing: safe names,
// no split parts, no multimodal projectors.
func candidates(files []File) []File {
	var out []File
	for _, f := range files {
		lower := strings.ToLower(f.Name)
		if !strings.HasSuffix(lower, ".gguf") || shardName.MatchString(f.Name) || strings.Contains(lower, "mmproj") || !safePath(f.Name) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// withQuant keeps the files whose name carries quant as a word of its own:
// preceded by the start or a character that is not a letter or digit, and
// followed by the end or a character that is neither that nor '_' (so Q4_K
// does not match Q4_K_M).
func withQuant(files []File, quant string) []File {
	q := strings.ToLower(quant)
	var out []File
	for _, f := range files {
		if hasQuant(strings.ToLower(baseName(f.Name)), q) {
			out = append(out, f)
		}
	}
	return out
}

func hasQuant(name, q string) bool {
	for from := 0; from < len(name); {
		i := strings.Index(name[from:], q)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(q)
		before := i == 0 || !isAlnum(name[i-1])
		after := end == len(name) || !isAlnum(name[end]) && name[end] != '_'
		if before && after {
			return true
		}
		from = i + 1
	}
	return false
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// smallest returns the smallest file (by size, then name).
func smallest(files []File) (File, bool) {
	if len(files) == 0 {
		return File{}, false
	}
	return slices.MinFunc(files, func(a, b File) int {
		if a.Size != b.Size {
			if a.Size < b.Size {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	}), true
}

// quantPattern finds quantization names in file names, for messages.
var quantPattern = regexp.MustCompile(`(?i)(?:^|[^a-z0-9])((?:i?q[1-8]_(?:k(?:_[sml]|_xs|_xxs)?|[0-9]|xs|xxs|s|m|nl))|bf16|f16|f32)(?:$|[^a-z0-9_])`)

// notFound is MODEL_NOT_FOUND listing what the repository has.
func notFound(ref string, files []File, msg string) error {
	var ggufs, quants []string
	for _, f := range candidates(files) {
		ggufs = append(ggufs, f.Name)
		if m := quantPattern.FindStringSubmatch(baseName(f.Name)); m != nil {
			q := strings.ToUpper(m[1])
			if !slices.Contains(quants, q) {
				quants = append(quants, q)
			}
		}
	}
	slices.Sort(ggufs)
	slices.Sort(quants)
	if ggufs == nil {
		ggufs = []string{}
	}
	if quants == nil {
		quants = []string{}
	}
	switch {
	case len(quants) > 0:
		msg += "; it has " + strings.Join(quants, ", ")
	case len(ggufs) > 0:
		msg += "; its GGUF files: " + strings.Join(ggufs, ", ")
	}
	return api.Errorf(api.CodeModelNotFound, "%s", msg).With("model_ref", ref).With("files", ggufs).With("quantizations", quants).
		WithHint("pick one of the repository's GGUF files: hf:ORG/REPO:QUANT or hf:ORG/REPO/FILE.gguf")
}
