// Package grammar constrains generation to JSON: any JSON value, or a value
// valid against a JSON schema.
//
// # Compiling
//
// [CompileSchema] turns a JSON schema into a [Grammar]; [JSON] is the grammar
// of any JSON value. A Grammar is immutable and safe for concurrent use, so
// one compiled schema can serve many requests. Keywords the compiler cannot
// enforce and that change which values are valid (pattern, minimum, not, …)
// are refused with a [*SchemaError] that names the keyword's place in the
// schema; annotations (title, description, format, …) and keywords JSON
// Schema does not define are ignored, as validators ignore them.
// docs/structured-output.md lists what is supported.
//
// # Matching
//
// A [Matcher] follows one generation: it reads the output a byte at a time
// as a pushdown automaton (a stack of frames, one per open object, array,
// string or number) and knows which bytes may come next. Where a schema is
// ambiguous (anyOf) it follows every alternative that is still possible.
// Objects are written with their properties in the schema's order: required
// ones always, optional ones when the model chooses to.
//
// # Tokens
//
// A [Vocab] holds the bytes of every token of a tokenizer, computed once,
// in a trie. [Matcher.Allows] checks one token (the sampler's choice) and
// [Matcher.Mask] the whole vocabulary, walking the trie so that tokens with
// a common prefix are checked together and a rejected prefix prunes its
// whole subtree. Tokens may span several JSON symbols or end inside a UTF-8
// character; control tokens are never allowed, except the end-of-generation
// tokens once the value is complete.
package grammar
