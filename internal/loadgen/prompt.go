package loadgen

import (
	"math/rand/v2"
	"strings"
)

// words are common English words that most tokenizers of English models
// (Llama's, GPT's) encode as one token each when a space precedes them, so
// that a prompt of n words is about n tokens long without a tokenizer.
var words = strings.Fields(`
the of and to in is was for that with on as at by from his her they this had
not are but have which were their one all been has when more there can who
will would out about some time into only other new what could year years over
also after first two people made may most many then them these than like well
way just even back any good much where work life should because each between
under through day long house still part place state water small
large city side left right high hand light night old young name home school
game story point world word group number music week order early late money
river road tree stone bird field garden door table window paper letter book
voice face power line form sound land sea ship car train wind rain snow fire
red blue green white black gold silver bright dark warm cold open close begin
keep walk run turn move stand sit read write speak hear see look find give
take bring carry hold leave meet call ask answer help show tell think know
feel seem want need try use play live die grow fall rise build break send
`)

// Prompt is the text of request index of a run seeded with seed: about
// tokens tokens of common words in a random order. The same seed and index
// always give the same text, and different indexes give different texts from
// their first words on, so that a server's prompt cache cannot answer one
// request from another's.
func Prompt(seed uint64, index, tokens int) string {
	return PromptWords(seed, index, max(tokens-1, 1)) // the server usually adds a beginning-of-text token
}

// PromptWords is the text of request index of a run seeded with seed, n
// words long (at least one): Prompt's words, in the same order.
func PromptWords(seed uint64, index, n int) string {
	rng := rand.New(rand.NewPCG(seed, uint64(index)))
	n = max(n, 1)
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}
