package chat

import (
	"errors"
	"fmt"
	"strings"
)

// Roles of chat messages. A tool message carries the result of a function
// call back to the model.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string // system, user, assistant or tool
	Content string
	// ToolCallID is, in a tool message, the id of the call it answers ("" if
	// unknown). Only formats whose tool results name their call write it.
	ToolCallID string
	// ToolCalls are, in an assistant message, the functions it called;
	// [Template.FormatTools] writes them in the template's tool format.
	ToolCalls []ToolCall

	// pre and post are written around the content, before the turn's
	// opener (Mistral's tool list); FormatTools sets them.
	pre, post, before []Segment
}

// Segment is a piece of a formatted prompt. Special marks template text,
// whose special-token texts ("<|im_start|>", "</s>") are meant as tokens;
// message contents have it false.
type Segment struct {
	Text    string
	Special bool
}

// Errors of Format; test with errors.Is.
var (
	// ErrNoMessages reports an empty conversation.
	ErrNoMessages = errors.New("chat: no messages")
	// ErrRole reports a role other than system, user, assistant and tool.
	ErrRole = errors.New("chat: unknown role")
)

// Family is a chat prompt format, named as llama.cpp names it.
type Family string

// The families Format writes.
const (
	ChatML          Family = "chatml"
	Phi4            Family = "phi4"
	Llama2          Family = "llama2"
	Llama2Sys       Family = "llama2-sys"
	Llama2SysBOS    Family = "llama2-sys-bos"
	Llama2SysStrip  Family = "llama2-sys-strip"
	MistralV1       Family = "mistral-v1"
	MistralV3       Family = "mistral-v3"
	MistralV3Tekken Family = "mistral-v3-tekken"
	MistralV7       Family = "mistral-v7"
	MistralV7Tekken Family = "mistral-v7-tekken"
	Llama3          Family = "llama3"
	Phi3            Family = "phi3"
	Falcon3         Family = "falcon3"
	Zephyr          Family = "zephyr"
	Gemma           Family = "gemma"
	Vicuna          Family = "vicuna"
	VicunaOrca      Family = "vicuna-orca"
	DeepSeek        Family = "deepseek"
	DeepSeek2       Family = "deepseek2"
	DeepSeek3       Family = "deepseek3"
)

// families lists every family, for name lookups.
var families = []Family{ChatML, Phi4, Llama2, Llama2Sys, Llama2SysBOS, Llama2SysStrip, MistralV1, MistralV3,
	MistralV3Tekken, MistralV7, MistralV7Tekken, Llama3, Phi3, Falcon3, Zephyr, Gemma, Vicuna, VicunaOrca,
	DeepSeek, DeepSeek2, DeepSeek3}

// Families returns every family Format writes.
func Families() []Family { return append([]Family(nil), families...) }

// DeepSeek 2 and 3 markers use fullwidth bars and U+2581 (the SentencePiece space).
const (
	dsEndOfSentence    = "<｜end▁of▁sentence｜>"
	dsUser             = "<｜User｜>"
	dsAssistant        = "<｜Assistant｜>"
	dsToolOutputsBegin = "<｜tool▁outputs▁begin｜>"
	dsToolOutputsEnd   = "<｜tool▁outputs▁end｜>"
	dsToolOutputBegin  = "<｜tool▁output▁begin｜>"
	dsToolOutputEnd    = "<｜tool▁output▁end｜>"
)

// Detect names the family of a Jinja chat template from the marker strings
// it contains, with llama.cpp's heuristics (llm_chat_detect_template), and
// reports false when none matches. A source that is a family's name selects
// that family.
func Detect(src string) (Family, bool) {
	for _, f := range families {
		if src == string(f) {
			return f, true
		}
	}
	has := func(s string) bool { return strings.Contains(src, s) }
	switch {
	case has("<|im_start|>"):
		if has("<|im_sep|>") {
			return Phi4, true
		}
		return ChatML, true
	case strings.HasPrefix(src, "mistral") || has("[INST]"):
		switch {
		case has("[SYSTEM_PROMPT]"):
			return MistralV7, true
		case has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]"):
			// Mistral's official v1, v3 and v3-tekken templates.
			if has(" [INST]") {
				return MistralV1, true
			}
			if has(`"[INST]"`) {
				return MistralV3Tekken, true
			}
			return MistralV3, true
		case has("content.strip()"):
			return Llama2SysStrip, true
		case has("bos_token + '[INST]"):
			return Llama2SysBOS, true
		case has("<<SYS>>"):
			return Llama2Sys, true
		}
		return Llama2, true
	case has("<|assistant|>") && has("<|end|>"):
		return Phi3, true
	case has("<|user|>") && has("<|assistant|>") && has("</s>"):
		return Falcon3, true
	case has("<|user|>") && (has("<|assistant|>") || has("<|endoftext|>")):
		return Zephyr, true
	case has("<start_of_turn>"):
		return Gemma, true
	case has("USER: ") && has("ASSISTANT: "):
		if has("SYSTEM: ") {
			return VicunaOrca, true
		}
		return Vicuna, true
	case has("### Instruction:") && has("<|EOT|>"):
		return DeepSeek, true
	case has("<|start_header_id|>") && has("<|end_header_id|>"):
		return Llama3, true
	case has("'Assistant: ' + message['content'] + eos_token"):
		return DeepSeek2, true
	case has(dsAssistant) && has(dsUser) && has(dsEndOfSentence):
		return DeepSeek3, true
	}
	return "", false
}

// Template is a chat format ready to use: a family and the model text it
// needs.
type Template struct {
	Family Family
	// EOS is the text zephyr-style templates end each message with: the
	// model's end-of-sequence token ("</s>", "<|endoftext|>").
	EOS string
	// ToolRole is the role header of tool messages in the llama3 format:
	// "ipython" for the Llama 3.1 to 3.3 templates, which name tool results
	// so; "" means "tool", as Llama 3.0's template writes any role.
	ToolRole string
	// Tools is how the template writes tools and calls ([FormatTools]);
	// "" means ToolsGeneric.
	Tools ToolStyle
}

// New returns the template for a model's tokenizer.chat_template source
// (may be empty) and the text of its EOS token. An empty or unrecognized
// source gives chatml, as llama.cpp's server does; known reports whether
// the source was recognized.
func New(src, eos string) (t Template, known bool) {
	f, ok := Detect(src)
	if !ok {
		f = ChatML
	}
	t = Template{Family: f, EOS: eos}
	if f == Zephyr && strings.Contains(src, "<|endoftext|>") {
		t.EOS = "<|endoftext|>"
	}
	if t.EOS == "" {
		t.EOS = "</s>"
	}
	if f == Llama3 && strings.Contains(src, "ipython") {
		t.ToolRole = "ipython"
	}
	if st := toolStyle(f, src); st != ToolsGeneric {
		t.Tools = st
	}
	return t, ok
}

// EndOfTurn is the text that ends an assistant turn in this format, "" when
// the format has none. A model whose vocabulary has it as an end-of-generation
// token stops there by itself; otherwise callers may use it as a stop string.
func (t Template) EndOfTurn() string {
	switch t.Family {
	case ChatML, Phi4:
		return "<|im_end|>"
	case Llama3:
		return "<|eot_id|>"
	case Phi3:
		return "<|end|>"
	case Zephyr:
		return t.eos()
	case Gemma:
		return "<end_of_turn>"
	case DeepSeek:
		return "<|EOT|>"
	case DeepSeek2, DeepSeek3:
		return dsEndOfSentence
	case Falcon3:
		return ""
	}
	return "</s>" // llama2, mistral, vicuna
}

func (t Template) eos() string {
	if t.EOS == "" {
		return "</s>"
	}
	return t.EOS
}

// trim removes the ASCII whitespace llama.cpp's formatter trims.
func trim(s string) string { return strings.Trim(s, " \t\n\v\f\r") }

// builder collects segments, merging neighbours of the same kind.
type builder struct{ segs []Segment }

func (b *builder) add(text string, special bool) {
	if text == "" {
		return
	}
	if n := len(b.segs); n > 0 && b.segs[n-1].Special == special {
		b.segs[n-1].Text += text
		return
	}
	b.segs = append(b.segs, Segment{Text: text, Special: special})
}

// tmpl adds template text; msg adds message content.
func (b *builder) tmpl(s ...string) {
	for _, x := range s {
		b.add(x, true)
	}
}
func (b *builder) msg(s string) { b.add(s, false) }

// write adds segments as they are.
func (b *builder) write(segs []Segment) {
	for _, s := range segs {
		b.add(s.Text, s.Special)
	}
}

// body adds a message's text (its content, as the family writes it)
// between the segments the tool formats put around it.
func (b *builder) body(m Message, text string) {
	b.write(m.pre)
	b.msg(text)
	b.write(m.post)
}

// toolAsUser reports whether the format has no turn for tool results, so
// that Format writes them as user turns: the Llama 2, Mistral v1, Gemma,
// Vicuna and the older DeepSeek templates refuse any role but system, user
// and assistant, and their models were not trained on another.
func (t Template) toolAsUser() bool {
	switch t.Family {
	case Llama2, Llama2Sys, Llama2SysBOS, Llama2SysStrip, MistralV1, Gemma, Vicuna, VicunaOrca, DeepSeek, DeepSeek2:
		return true
	}
	return false
}

// header is the role name a turn's header shows.
func (t Template) header(role string) string {
	if role == RoleTool && t.Family == Llama3 && t.ToolRole != "" {
		return t.ToolRole
	}
	return role
}

// Format writes msgs in the template's format. With addAssistant it ends with
// the generation prompt that opens the assistant's turn (formats whose user
// turn already ends with it, such as llama2's "[/INST]", add nothing).
// Roles must be system, user, assistant or tool; contents may be empty.
// Tool messages are written as the family's templates write them: a turn
// with a "tool" header where turns name their role (chatml, phi4, llama3,
// phi3, falcon3, zephyr), Mistral's [TOOL_RESULTS] block (v3 and v7),
// DeepSeek 3's tool outputs, and a user turn in the families that have no
// tool role.
func (t Template) Format(msgs []Message, addAssistant bool) ([]Segment, error) {
	if len(msgs) == 0 {
		return nil, ErrNoMessages
	}
	for i, m := range msgs {
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant, RoleTool:
		default:
			return nil, fmt.Errorf("%w %q in message %d", ErrRole, m.Role, i)
		}
	}
	if t.toolAsUser() {
		msgs = toolsAsUser(msgs)
	}
	var b builder
	switch t.Family {
	case ChatML:
		for _, m := range msgs {
			b.tmpl("<|im_start|>", m.Role, "\n")
			b.body(m, m.Content)
			b.tmpl("<|im_end|>\n")
		}
		if addAssistant {
			b.tmpl("<|im_start|>assistant\n")
		}
	case Phi4:
		for _, m := range msgs {
			b.tmpl("<|im_start|>", m.Role, "<|im_sep|>")
			b.body(m, m.Content)
			b.tmpl("<|im_end|>")
		}
		if addAssistant {
			b.tmpl("<|im_start|>assistant<|im_sep|>")
		}
	case Llama2, Llama2Sys, Llama2SysBOS, Llama2SysStrip:
		t.llama2(&b, msgs)
	case MistralV1, MistralV3, MistralV3Tekken:
		t.mistral(&b, msgs)
	case MistralV7, MistralV7Tekken:
		sp := " "
		if t.Family == MistralV7Tekken {
			sp = ""
		}
		for _, m := range msgs {
			switch m.Role {
			case RoleSystem:
				b.tmpl("[SYSTEM_PROMPT]", sp)
				b.body(m, m.Content)
				b.tmpl("[/SYSTEM_PROMPT]")
			case RoleUser:
				b.write(m.before)
				b.tmpl("[INST]", sp)
				b.body(m, m.Content)
				b.tmpl("[/INST]")
			case RoleTool:
				t.toolResults(&b, m, sp)
			default:
				b.tmpl(sp)
				b.body(m, m.Content)
				b.tmpl("</s>")
			}
		}
	case Llama3:
		for _, m := range msgs {
			b.tmpl("<|start_header_id|>", t.header(m.Role), "<|end_header_id|>\n\n")
			if m.Role == RoleTool {
				b.body(m, m.Content) // Llama 3.1's template does not trim tool results
			} else {
				b.body(m, trim(m.Content))
			}
			b.tmpl("<|eot_id|>")
		}
		if addAssistant {
			b.tmpl("<|start_header_id|>assistant<|end_header_id|>\n\n")
		}
	case Phi3, Falcon3, Zephyr:
		end := map[Family]string{Phi3: "<|end|>\n", Falcon3: "\n", Zephyr: t.eos() + "\n"}[t.Family]
		for _, m := range msgs {
			b.tmpl("<|", m.Role, "|>\n")
			b.body(m, m.Content)
			b.tmpl(end)
		}
		if addAssistant {
			b.tmpl("<|assistant|>\n")
		}
	case Gemma:
		// Gemma has no system role: the system text opens the next user turn.
		system := ""
		for _, m := range msgs {
			if m.Role == RoleSystem {
				system += trim(m.Content)
				continue
			}
			role := m.Role
			if role == RoleAssistant {
				role = "model"
			}
			b.tmpl("<start_of_turn>", role, "\n")
			if system != "" && role != "model" {
				b.msg(system)
				b.tmpl("\n\n")
				system = ""
			}
			b.body(m, trim(m.Content))
			b.tmpl("<end_of_turn>\n")
		}
		if addAssistant {
			b.tmpl("<start_of_turn>model\n")
		}
	case Vicuna, VicunaOrca:
		for _, m := range msgs {
			switch m.Role {
			case RoleSystem:
				if t.Family == VicunaOrca {
					b.tmpl("SYSTEM: ")
					b.body(m, m.Content)
					b.tmpl("\n")
				} else {
					b.body(m, m.Content)
					b.tmpl("\n\n")
				}
			case RoleUser:
				b.tmpl("USER: ")
				b.body(m, m.Content)
				b.tmpl("\n")
			default:
				b.tmpl("ASSISTANT: ")
				b.body(m, m.Content)
				b.tmpl("</s>\n")
			}
		}
		if addAssistant {
			b.tmpl("ASSISTANT:")
		}
	case DeepSeek:
		for _, m := range msgs {
			switch m.Role {
			case RoleSystem:
				b.body(m, m.Content)
			case RoleUser:
				b.tmpl("### Instruction:\n")
				b.body(m, m.Content)
				b.tmpl("\n")
			default:
				b.tmpl("### Response:\n")
				b.body(m, m.Content)
				b.tmpl("\n<|EOT|>\n")
			}
		}
		if addAssistant {
			b.tmpl("### Response:\n")
		}
	case DeepSeek2:
		for _, m := range msgs {
			switch m.Role {
			case RoleSystem:
				b.body(m, m.Content)
				b.tmpl("\n\n")
			case RoleUser:
				b.tmpl("User: ")
				b.body(m, m.Content)
				b.tmpl("\n\n")
			default:
				b.tmpl("Assistant: ")
				b.body(m, m.Content)
				b.tmpl(dsEndOfSentence)
			}
		}
		if addAssistant {
			b.tmpl("Assistant:")
		}
	case DeepSeek3:
		// Consecutive tool messages share one block of tool outputs; the
		// assistant's answer to them follows the block with no marker of its
		// own, as in DeepSeek's templates.
		afterTools := false
		for i, m := range msgs {
			switch m.Role {
			case RoleSystem:
				b.body(m, m.Content)
				b.tmpl("\n\n")
			case RoleUser:
				b.tmpl(dsUser)
				b.body(m, m.Content)
			case RoleTool:
				if afterTools {
					b.tmpl("\n")
				} else {
					b.tmpl(dsToolOutputsBegin)
				}
				b.tmpl(dsToolOutputBegin)
				b.body(m, m.Content)
				b.tmpl(dsToolOutputEnd)
				if i == len(msgs)-1 || msgs[i+1].Role != RoleTool {
					b.tmpl(dsToolOutputsEnd)
				}
			default:
				if !afterTools {
					b.tmpl(dsAssistant)
				}
				b.body(m, m.Content)
				b.tmpl(dsEndOfSentence)
			}
			afterTools = m.Role == RoleTool
		}
		if addAssistant && !afterTools {
			b.tmpl(dsAssistant)
		}
	default:
		return nil, fmt.Errorf("chat: unknown template family %q", t.Family)
	}
	return b.segs, nil
}

// llama2 writes the Llama 2 format and its variants: the system message
// inside the first [INST] (between <<SYS>> markers when supported), each
// user message closed by " [/INST]", each assistant message by "</s>". The
// first "[INST]" has no BOS before it: the tokenizer adds it.
func (t Template) llama2(b *builder, msgs []Message) {
	sys := t.Family != Llama2
	bosInside := t.Family == Llama2SysBOS
	strip := t.Family == Llama2SysStrip
	b.tmpl("[INST] ")
	inTurn := true
	for _, m := range msgs {
		c := m.Content
		if strip {
			c = trim(c)
		}
		if !inTurn {
			inTurn = true
			if bosInside {
				b.tmpl("<s>")
			}
			b.tmpl("[INST] ")
		}
		switch m.Role {
		case RoleSystem:
			if sys {
				b.tmpl("<<SYS>>\n")
				b.body(m, c)
				b.tmpl("\n<</SYS>>\n\n")
			} else {
				b.body(m, c)
				b.tmpl("\n")
			}
		case RoleUser:
			b.body(m, c)
			b.tmpl(" [/INST]")
		default:
			b.body(m, c)
			b.tmpl("</s>")
			inTurn = false
		}
	}
}

// mistral writes Mistral's official v1, v3 and v3-tekken formats, which
// differ in the spaces around [INST] and in trimming assistant messages.
func (t Template) mistral(b *builder, msgs []Message) {
	lead, trail := "", " "
	switch t.Family {
	case MistralV1:
		lead = " "
	case MistralV3Tekken:
		trail = ""
	}
	inTurn, afterTools := false, false
	for _, m := range msgs {
		if m.Role == RoleTool {
			// A result follows the assistant's call, outside [INST], and the
			// assistant's answer to it follows the result.
			t.toolResults(b, m, trail)
			inTurn, afterTools = false, true
			continue
		}
		if !inTurn && !(afterTools && m.Role == RoleAssistant) {
			b.write(m.before)
			b.tmpl(lead, "[INST]", trail)
			inTurn = true
		}
		afterTools = false
		switch m.Role {
		case RoleSystem:
			b.body(m, m.Content)
			b.tmpl("\n\n")
		case RoleUser:
			b.body(m, m.Content)
			b.tmpl(lead, "[/INST]")
		default:
			c := m.Content
			if t.Family == MistralV3 {
				c = trim(c)
			}
			b.tmpl(trail)
			b.body(m, c)
			b.tmpl("</s>")
			inTurn = false
		}
	}
}

// toolResults writes a tool message in Mistral's format: the content, as
// is, in a JSON object with the call's id, between [TOOL_RESULTS] markers.
// Mistral's v7 templates keep the id's last 9 characters; a message without
// an id has no call_id.
func (t Template) toolResults(b *builder, m Message, sp string) {
	b.tmpl("[TOOL_RESULTS]", sp, `{"content": `)
	b.body(m, m.Content)
	if id := m.ToolCallID; id != "" {
		if r := []rune(id); (t.Family == MistralV7 || t.Family == MistralV7Tekken) && len(r) > 9 {
			id = string(r[len(r)-9:])
		}
		b.tmpl(`, "call_id": "`)
		b.msg(jsonEscaper.Replace(id))
		b.tmpl(`"`)
	}
	b.tmpl("}[/TOOL_RESULTS]")
}

// jsonEscaper escapes the characters a JSON string cannot hold as they are
// (control characters never reach here: requests refuse them).
var jsonEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// toolsAsUser returns msgs with tool messages turned into user messages.
func toolsAsUser(msgs []Message) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		if m.Role == RoleTool {
			m.Role = RoleUser
		}
		out[i] = m
	}
	return out
}

// Join returns the prompt text of segs.
func Join(segs []Segment) string {
	var sb strings.Builder
	for _, s := range segs {
		sb.WriteString(s.Text)
	}
	return sb.String()
}
