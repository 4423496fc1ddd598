package tokenizer

// Segment is a piece of a prompt for [Tokenizer.EncodeSegments]: text and
// whether special-token texts in it become special tokens.
type Segment struct {
	Text string
	// Special parses control-token texts ("<|im_start|>", "</s>") in Text
	// as those tokens. Template text sets it; text that came from a user
	// leaves it false, so a message cannot forge a turn boundary.
	Special bool
}

// EncodeSegments tokenizes the concatenation of segs as [Tokenizer.Encode]
// would with parseSpecial, except that special-token texts inside segments
// whose Special is false stay plain text. Adjacent plain-text pieces are
// tokenized as one, so that the ids match those of the joined string
// wherever no special token is involved. With addSpecial it adds BOS and
// EOS as the vocabulary says.
func (t *Tokenizer) EncodeSegments(segs []Segment, addSpecial bool) []int {
	var frags []fragment
	for _, s := range segs {
		for _, f := range t.partition(s.Text, s.Special) {
			if n := len(frags); f.tok < 0 && n > 0 && frags[n-1].tok < 0 {
				frags[n-1].text += f.text
				continue
			}
			frags = append(frags, f)
		}
	}
	out := make([]int, 0, 8)
	if addSpecial && t.addBOS {
		out = append(out, t.bos)
	}
	switch t.model {
	case modelSPM:
		out = t.encodeSPM(frags, out)
	case modelBPE:
		out = t.encodeBPE(frags, out)
	}
	if addSpecial && t.addEOS {
		out = append(out, t.eos)
	}
	return out
}
