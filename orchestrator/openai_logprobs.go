package orchestrator

import "rbee/api"

// OpenAI's shapes of log-probabilities. Chat completions list one entry
// per generated token in logprobs.content; legacy completions give
// parallel lists (tokens, token_logprobs, top_logprobs as token → logprob
// maps, and each token's byte offset in the text). A token's text is its
// own piece of the vocabulary; bytes are that piece's exact bytes, which
// differ from the text's when the piece is part of a UTF-8 character (a
// byte-fallback token): its text then shows U+FFFD.

type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
	Refusal []chatTokenLogprob `json:"refusal"`
}

type chatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// tokenText is the text and bytes a logprob entry gives for a token
// event: the token's own piece.
func tokenText(t *api.Token) (string, []int) {
	text := t.Piece
	if text == "" && t.PieceBytes == nil {
		text = t.Token
	}
	return text, exactBytes(text, t.PieceBytes)
}

// exactBytes is raw when the worker sent it (text not valid UTF-8), else
// text's bytes.
func exactBytes(text string, raw []byte) []int {
	if raw != nil {
		text = string(raw)
	}
	return textBytes(text)
}

func textBytes(s string) []int {
	b := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		b[i] = int(s[i])
	}
	return b
}

func chatLogprobsOf(toks []*api.Token) *chatLogprobs {
	out := &chatLogprobs{Content: make([]chatTokenLogprob, 0, len(toks))}
	for _, t := range toks {
		text, raw := tokenText(t)
		e := chatTokenLogprob{Token: text, Logprob: *t.Logprob, Bytes: raw, TopLogprobs: make([]chatTopLogprob, len(t.TopLogprobs))}
		for i, tl := range t.TopLogprobs {
			e.TopLogprobs[i] = chatTopLogprob{Token: tl.Token, Logprob: tl.Logprob, Bytes: exactBytes(tl.Token, tl.Bytes)}
		}
		out.Content = append(out.Content, e)
	}
	return out
}

// completionLogprobsOf lists toks, whose released text starts at byte
// offset of the completion; each token's offset is where its released text
// starts (the text held back for a possible stop string is counted where
// it is released).
func completionLogprobsOf(toks []*api.Token, offset int) *completionLogprobs {
	n := len(toks)
	out := &completionLogprobs{Tokens: make([]string, 0, n), TokenLogprobs: make([]float64, 0, n),
		TopLogprobs: make([]map[string]float64, 0, n), TextOffset: make([]int, 0, n)}
	for _, t := range toks {
		text, _ := tokenText(t)
		out.Tokens = append(out.Tokens, text)
		out.TokenLogprobs = append(out.TokenLogprobs, *t.Logprob)
		top := make(map[string]float64, len(t.TopLogprobs))
		for _, tl := range t.TopLogprobs {
			// Two tokens can share a text (a piece and its byte tokens): keep
			// the likelier, which comes first.
			if _, dup := top[tl.Token]; !dup {
				top[tl.Token] = tl.Logprob
			}
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
		out.TextOffset = append(out.TextOffset, offset)
		offset += len(t.Token)
	}
	return out
}
