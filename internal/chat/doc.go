// Package chat turns a list of chat messages into the prompt a model was
// trained on, the way llama.cpp's built-in chat templates do.
//
// A GGUF file carries its chat template as Jinja source in
// tokenizer.chat_template. This package does not run Jinja: like llama.cpp's
// llm_chat_detect_template, [Detect] recognizes the template's family from
// marker strings it contains ("<|im_start|>" is chatml, "<|start_header_id|>"
// is Llama 3, "[INST]" is Llama 2 or Mistral, …), and [Template.Format]
// writes the messages in that family's format, ending with the generation
// prompt that opens the assistant's turn.
//
// # Families
//
// chatml, phi4, llama2 (and llama2-sys, llama2-sys-bos, llama2-sys-strip),
// mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken,
// llama3, phi3, falcon3, zephyr, gemma, vicuna, vicuna-orca, deepseek,
// deepseek2 and deepseek3. A template source that is exactly one of these
// names selects it.
//
// Zephyr-style templates (TinyLlama-Chat, zephyr-7b, stablelm-zephyr) end every
// message with the model's end-of-sequence text ("</s>" for TinyLlama), which
// is what their Jinja source renders; llama.cpp's legacy formatter writes
// "<|endoftext|>" for them and detects TinyLlama's template as glmedge. Here
// a template that names "<|endoftext|>" gets it, and the others get the EOS
// text passed to [New].
//
// # Tool results and empty turns
//
// Besides system, user and assistant, a message may have the role tool: the
// result of a function call, sent back to the model. Each family writes it
// as its own templates do:
//
//   - chatml, phi4, llama3, phi3, falcon3 and zephyr, whose turns name their
//     role, write a turn named "tool" ("<|im_start|>tool\n…"); llama3 names
//     it "ipython" instead when the template does, as Llama 3.1 to 3.3's do
//     ([New] sets [Template.ToolRole]).
//   - mistral-v3, mistral-v3-tekken, mistral-v7 and mistral-v7-tekken write
//     `[TOOL_RESULTS] {"content": …, "call_id": "…"}[/TOOL_RESULTS]` after
//     the assistant's turn, and the assistant's answer follows it without a
//     new [INST].
//   - deepseek3 gathers consecutive results in one block of tool outputs,
//     which the assistant's answer follows directly.
//   - llama2 and its variants, mistral-v1, gemma, vicuna, vicuna-orca,
//     deepseek and deepseek2 have no tool role (their templates refuse any
//     other role), so a result is written as a user turn.
//
// Any message may be empty; chat interfaces keep empty replies in the
// histories they send back.
//
// # Tools and calls
//
// [Template.FormatTools] also describes the functions a model may call and
// writes the calls of earlier assistant turns, in the template's tool style
// ([ToolStyle], chosen by [New] from the template source): Qwen 2.5 and
// Hermes chatml templates (<tool_call> blocks, results in <tool_response>
// blocks of a user turn), Llama 3.1 to 3.3 (JSON calls, results in ipython
// turns), Mistral ([AVAILABLE_TOOLS], [TOOL_CALLS], [TOOL_RESULTS]), and,
// for every other template, a description added to the system message that
// asks for calls in the Hermes format. [ParseToolCalls] reads calls back out
// of a reply in any of these formats.
//
// # No template, or an unknown one
//
// As llama.cpp's server does, a model without a chat template, or with one
// no heuristic recognizes, is prompted in chatml ("<|im_start|>user\n…
// <|im_end|>\n<|im_start|>assistant\n"). [New] reports whether it fell back.
//
// # Special tokens and BOS
//
// Format returns [Segment]s rather than one string: template text (markers,
// role headers, separators) has Special set, message contents do not. The
// caller tokenizes template text with special-token parsing and contents
// without, so that a user who types "<|im_end|>" gets those characters, not a
// turn boundary. The formatted prompt never starts with the BOS text: the
// tokenizer adds BOS when the vocabulary asks for it (llama.cpp's behaviour
// when it tokenizes a chat prompt), so a prompt never gets two.
package chat
