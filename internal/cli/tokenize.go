package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"unicode/utf8"

	"rbee/api"
	"rbee/internal/cliutil"
	"rbee/internal/gguf"
	"rbee/internal/tokenizer"
)

// Limits of rbee tokenize's input: all of standard input as one text, and
// one line of --jsonl.
const (
	tokenizeMaxText = 256 << 20
	tokenizeMaxLine = 64 << 20
)

const tokenizeHelp = `Prints the token ids of TEXT (or of standard input when TEXT is absent
or "-") as a list, [1, 2, 3], the way llama.cpp's tokenize tool does with
--ids. The file needs only its tokenizer metadata: llama.cpp's vocab-only
GGUF files work, and the tensors of a full model are not read.

  --pieces         print one token per line instead: "  1234 -> 'piece'"
                   (control tokens show their text; bytes that are not
                   UTF-8 show as <hex> and the line ends "(utf-8 decode failure)")
  --add-special    add BOS/EOS where the vocabulary asks for them
  --parse-special  read text like "<|im_end|>" as the special token it spells
                   (otherwise it is tokenized as plain text)
  --jsonl          read one JSON string per line of standard input and write
                   one JSON array of ids per line, in the same order; a line
                   that is not a JSON string gets an error object
                   {"error":{...}} on its output line, and the exit status is 1

The text is taken as it is: escapes such as \n are not interpreted. Flags
may follow TEXT; after "--" everything is TEXT (for a text starting with "-").
Exit status: 0 success, 1 unreadable model or bad input, 2 usage error.`

func runTokenize(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "tokenize")
	model := fs.String("model", "", "path of a GGUF file with tokenizer metadata (required)")
	pieces := fs.Bool("pieces", false, "print each token's id and piece, one per line")
	addSpecial := fs.Bool("add-special", false, "add BOS/EOS as the vocabulary says")
	parseSpecial := fs.Bool("parse-special", false, "read special-token text as special tokens")
	jsonl := fs.Bool("jsonl", false, "one JSON string per input line in, one JSON array of ids per line out")
	texts, err := parseInterspersed(env, fs, args)
	if err != nil {
		if errors.Is(err, cliutil.ErrHelp) {
			fmt.Fprintln(env.Stdout, "\n"+tokenizeHelp)
		}
		return err
	}
	if *model == "" {
		return usagef("--model is required")
	}
	if len(texts) > 1 {
		return usagef("one TEXT at most (quote it), got %d arguments", len(texts))
	}
	fromStdin := len(texts) == 0 || texts[0] == "-"
	if *jsonl && !fromStdin {
		return usagef("--jsonl reads standard input; do not give TEXT")
	}
	if *jsonl && *pieces {
		return usagef("--pieces and --jsonl do not go together")
	}
	tok, err := openTokenizer(*model)
	if err != nil {
		return err
	}
	out := bufio.NewWriterSize(env.Stdout, 64<<10)
	if *jsonl {
		return tokenizeLines(ctx, env, tok, out, *addSpecial, *parseSpecial)
	}

	var text string
	if !fromStdin {
		text = texts[0]
	} else {
		b, err := readAllLimited(env.Stdin, tokenizeMaxText)
		if err != nil {
			return withHint(api.Errorf(api.CodePayloadTooLarge, "reading standard input: %v", err),
				"use --jsonl to tokenize a large data set line by line")
		}
		text = string(b)
	}
	ids := tok.Encode(text, *addSpecial, *parseSpecial)
	if *pieces {
		for _, id := range ids {
			writePiece(out, tok, id)
		}
	} else {
		out.WriteByte('[')
		var num []byte
		for i, id := range ids {
			if i > 0 {
				out.WriteString(", ")
			}
			num = strconv.AppendInt(num[:0], int64(id), 10)
			out.Write(num)
		}
		out.WriteString("]\n")
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	return nil
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (rbee tokenize --model m.gguf "text" --pieces) and
// returns the positional ones; after "--" everything is positional.
func parseInterspersed(env *Env, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, parseFlags(env, fs, []string{"-help"})
		}
		if err != nil {
			return nil, usagef("%s", strings.TrimPrefix(err.Error(), "flag: "))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// openTokenizer loads the tokenizer of a GGUF file, with errors a user can
// act on.
func openTokenizer(path string) (*tokenizer.Tokenizer, error) {
	tok, err := tokenizer.Open(path)
	if err == nil {
		return tok, nil
	}
	var fe *gguf.FormatError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, withHint(api.Errorf(api.CodeModelNotFound, "model file %s does not exist", path),
			"give the path of a .gguf file with --model")
	case errors.As(err, &fe):
		return nil, withHint(api.Errorf(api.CodeInvalidRequest, "%s is not a readable GGUF file: %v", path, err),
			"the file may be truncated or not a model; download it again")
	case errors.Is(err, tokenizer.ErrUnsupported):
		return nil, withHint(api.Errorf(api.CodeInvalidRequest, "%s: %v", path, err),
			"rbee reads llama (SentencePiece) and gpt2 (byte-level BPE) vocabularies with the pre-tokenizers llama.cpp knows")
	case errors.Is(err, tokenizer.ErrInvalidVocab):
		return nil, withHint(api.Errorf(api.CodeInvalidRequest, "%s: %v", path, err),
			"the file's tokenizer metadata is damaged or missing")
	}
	return nil, withHint(api.Errorf(api.CodeInvalidRequest, "reading %s: %v", path, err), "check that the file is readable")
}

// writePiece writes one --pieces line: the id right-aligned in six columns
// and the piece in quotes, as llama.cpp's tokenize tool prints them.
func writePiece(w *bufio.Writer, tok *tokenizer.Tokenizer, id int) {
	var piece []byte
	if tok.IsControl(id) {
		piece = []byte(tok.TokenText(id))
	} else {
		piece = tok.Piece(id)
	}
	fmt.Fprintf(w, "%6d -> '", id)
	if utf8.Valid(piece) {
		w.Write(piece)
		w.WriteString("'\n")
		return
	}
	w.WriteByte('<')
	for i, b := range piece {
		if i > 0 {
			w.WriteByte(' ')
		}
		fmt.Fprintf(w, "%02x", b)
	}
	w.WriteString(">' (utf-8 decode failure)\n")
}

// tokenizeLines is --jsonl: each input line is a JSON string and gets a JSON
// array of ids on the same output line, or an error envelope when it is not
// a JSON string. Output is flushed whenever the input has nothing more
// buffered, so that a program feeding lines one by one reads each answer.
func tokenizeLines(ctx context.Context, env *Env, tok *tokenizer.Tokenizer, out *bufio.Writer, addSpecial, parseSpecial bool) error {
	in := bufio.NewReaderSize(env.Stdin, 1<<20)
	var (
		line, buf []byte
		n, bad    int
		firstBad  int
	)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		line, err = readLine(in, line[:0], tokenizeMaxLine)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			break
		}
		n++
		tooLong := errors.Is(err, errLineTooLong)
		if err != nil && !errors.Is(err, io.EOF) && !tooLong {
			return fmt.Errorf("reading standard input: %w", err)
		}
		var text string
		var lineErr *api.Error
		switch {
		case tooLong:
			lineErr = api.Errorf(api.CodePayloadTooLarge, "line %d: longer than %d bytes", n, tokenizeMaxLine).
				WithHint("split the text over several lines")
		default:
			if jerr := json.Unmarshal(line, &text); jerr != nil {
				lineErr = api.Errorf(api.CodeInvalidRequest, "line %d: not a JSON string: %v", n, jerr).
					WithHint(`write each text as a JSON string on its own line, e.g. "Hello\nworld"`)
			}
		}
		if lineErr != nil {
			bad++
			if firstBad == 0 {
				firstBad = n
			}
			b, _ := json.Marshal(api.Envelope{Error: lineErr})
			out.Write(b)
			out.WriteByte('\n')
		} else {
			buf = append(buf[:0], '[')
			for i, id := range tok.Encode(text, addSpecial, parseSpecial) {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = strconv.AppendInt(buf, int64(id), 10)
			}
			buf = append(buf, ']', '\n')
			out.Write(buf)
		}
		if in.Buffered() == 0 {
			if ferr := out.Flush(); ferr != nil {
				return fmt.Errorf("writing the output: %w", ferr)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	if bad > 0 {
		return withHint(api.Errorf(api.CodeInvalidRequest, "%d of %d input lines were not tokenized (the first is line %d)", bad, n, firstBad),
			"their output lines hold the error; every line must be one JSON string")
	}
	return nil
}

var errLineTooLong = errors.New("line too long")

// readLine appends the next line of r (without its "\n" or "\r\n") to buf.
// A line longer than limit is read to its end and dropped, with
// errLineTooLong. At the end of input it returns io.EOF, with the last line
// when that had no newline.
func readLine(r *bufio.Reader, buf []byte, limit int) ([]byte, error) {
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > limit+2 {
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			if err == nil {
				err = errLineTooLong
			} else if errors.Is(err, io.EOF) {
				err = errors.Join(errLineTooLong, io.EOF)
			}
			return buf, err
		}
		if len(buf) > 0 && buf[len(buf)-1] == '\n' {
			buf = buf[:len(buf)-1]
			if len(buf) > 0 && buf[len(buf)-1] == '\r' {
				buf = buf[:len(buf)-1]
			}
		}
		return buf, err
	}
}
