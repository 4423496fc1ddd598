package engine

// ChatTemplate returns the model's chat template: the Jinja source in the
// GGUF key tokenizer.chat_template, or "" when the file has none. Package
// rbee/internal/chat recognizes its family and formats chat messages.
func (m *Model) ChatTemplate() string {
	s, _ := m.file.GetString("tokenizer.chat_template")
	return s
}
