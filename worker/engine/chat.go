package engine

// ChatTemplate returns the model's chat template: the Jinja source in the
// GGUF key tokenizer.chat_template, or "" when the file has none. rbee's
// worker recognizes the common template families and formats chat messages
// with them.
func (m *Model) ChatTemplate() string {
	s, _ := m.file.GetString("tokenizer.chat_template")
	return s
}
