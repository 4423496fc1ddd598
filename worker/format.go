package worker

import (
	"errors"
	"sync"

	"rbee/api"
	"rbee/internal/grammar"
	"rbee/worker/engine"
)

// maxCachedFormats bounds the compiled schemas a worker keeps; past it the
// cache starts again (clients usually send the same few schemas over and
// over).
const maxCachedFormats = 64

// formats compiles the formats of requests into grammars, once per distinct
// schema, and holds the model's vocabulary in the shape the grammar
// matcher needs (built at the first constrained request).
type formats struct {
	once  sync.Once
	vocab *grammar.Vocab

	mu       sync.Mutex
	compiled map[string]*grammar.Grammar
}

// constraint returns a fresh matcher for f on model m, or nil for free
// text. A schema that cannot be enforced is INVALID_REQUEST for the field
// "format".
func (fs *formats) constraint(m *engine.Model, f *api.Format) (engine.Constraint, *api.Error) {
	if f == nil {
		return nil, nil
	}
	g, e := fs.grammar(f)
	if e != nil {
		return nil, e
	}
	fs.once.Do(func() {
		tok := m.Tokenizer()
		fs.vocab = grammar.NewVocab(tok.VocabSize(), tok.Piece, tok.IsEOG)
	})
	return g.NewMatcher(fs.vocab), nil
}

func (fs *formats) grammar(f *api.Format) (*grammar.Grammar, *api.Error) {
	if e := f.Validate(); e != nil {
		return nil, e
	}
	if f.Type == api.FormatJSON {
		return grammar.JSON(), nil
	}
	key := string(f.Schema)
	fs.mu.Lock()
	g, ok := fs.compiled[key]
	fs.mu.Unlock()
	if ok {
		return g, nil
	}
	g, err := grammar.CompileSchema(f.Schema)
	if err != nil {
		var se *grammar.SchemaError
		if errors.As(err, &se) {
			return nil, se.APIError("format")
		}
		return nil, api.InvalidField("format", "%v", err)
	}
	fs.mu.Lock()
	if fs.compiled == nil || len(fs.compiled) >= maxCachedFormats {
		fs.compiled = make(map[string]*grammar.Grammar)
	}
	fs.compiled[key] = g
	fs.mu.Unlock()
	return g, nil
}
