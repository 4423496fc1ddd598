package worker

import (
	"slices"

	"rbee/api"
	"rbee/internal/chat"
	"rbee/worker/engine"
)

// chatTemplate is the model's chat format: its tokenizer.chat_template's
// family, or chatml when it has none or an unknown one (llama.cpp's server
// does the same).
func chatTemplate(m *engine.Model) (tmpl chat.Template, known bool) {
	tok := m.Tokenizer()
	return chat.New(m.ChatTemplate(), tok.TokenText(tok.EOS()))
}

// chatTemplateName describes the model's chat format for the log.
func chatTemplateName(m *engine.Model) string {
	tmpl, known := chatTemplate(m)
	switch {
	case known:
		return string(tmpl.Family)
	case m.ChatTemplate() == "":
		return string(tmpl.Family) + " (the model has no chat template)"
	}
	return string(tmpl.Family) + " (the model's chat template is not recognized)"
}

// promptTokens returns the prompt of a validated request as tokens, and the
// stop strings to generate with. A prompt is tokenized with BOS and with
// special-token texts parsed (as llama.cpp's server does). Chat messages are
// formatted with the model's template, ending with the assistant's turn:
// template text is tokenized with special tokens, message contents without,
// so that a message cannot forge a turn boundary. When the template's
// end-of-turn text is not a token of the vocabulary (chatml on a model that
// lacks <|im_end|>), it is added to the stop strings if there is room, so
// the reply still ends with its turn; an end-of-turn token ends generation
// by itself.
//
// With tools (and a tool choice other than none), the tools are described
// in the template's tool format and the returned toolReply parses the
// calls out of the reply; it is nil when the request offers no tools.
func promptTokens(m *engine.Model, req *api.InferenceRequest, stop []string) ([]int, []string, *toolReply, *api.Error) {
	tok := m.Tokenizer()
	if req.Messages == nil {
		return tok.Encode(req.Prompt, true, true), stop, nil, nil
	}
	tmpl, _ := chatTemplate(m)
	msgs := make([]chat.Message, len(req.Messages))
	for i, cm := range req.Messages {
		msgs[i] = chat.Message{Role: cm.Role, Content: cm.Content, ToolCallID: cm.ToolCallID}
		for _, c := range cm.ToolCalls {
			msgs[i].ToolCalls = append(msgs[i].ToolCalls, chat.ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
		}
	}
	tp, reply := toolPrompt(req.ToolUse)
	segs, prefill, err := tmpl.FormatTools(msgs, tp, true)
	if err != nil {
		return nil, nil, nil, api.InvalidField("messages", "%v", err)
	}
	if reply != nil {
		reply.prefill = prefill
		reply.argKey = tmpl.ArgumentsKey()
	}
	tsegs := make([]engine.Segment, len(segs))
	for i, sg := range segs {
		tsegs[i] = engine.Segment{Text: sg.Text, Special: sg.Special}
	}
	ids := tok.EncodeSegments(tsegs, true)
	if eot := tmpl.EndOfTurn(); eot != "" && len(stop) < api.MaxStopStrings && !slices.Contains(stop, eot) {
		if _, isToken := tok.TokenID(eot); !isToken {
			stop = append(slices.Clip(stop), eot)
		}
	}
	return ids, stop, reply, nil
}

// inputField names the request's input in errors: prompt or messages.
func inputField(req *api.InferenceRequest) string {
	if req.Messages != nil {
		return "messages"
	}
	return "prompt"
}
