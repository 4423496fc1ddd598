package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"rbee/api"
)

// Limits that keep compiling and matching bounded whatever the schema.
const (
	// MaxSchemaNodes bounds the subschemas one schema may hold.
	MaxSchemaNodes = 10000
	// MaxSchemaDepth bounds how deeply subschemas nest in the schema's text
	// ($ref recursion is not nesting and may go deeper at matching time).
	MaxSchemaDepth = 64
	// MaxLiteralBytes bounds the bytes of all property names and enum and
	// const values of one schema, written as JSON.
	MaxLiteralBytes = 1 << 18
	// MaxNesting bounds the objects and arrays open at once in the output.
	MaxNesting = 100
)

// SchemaError says why a schema cannot be compiled: where in the schema
// (a JSON pointer such as "/properties/age"), what is wrong and what to do.
type SchemaError struct {
	Path    string
	Message string
	Hint    string
}

func (e *SchemaError) Error() string {
	if e.Path == "" {
		return "schema: " + e.Message
	}
	return fmt.Sprintf("schema at %s: %s", e.Path, e.Message)
}

// APIError is e as the INVALID_REQUEST error of the request field that
// carried the schema ("response_format", "format", "tools").
func (e *SchemaError) APIError(field string) *api.Error {
	out := api.InvalidField(field, "%s", e.Error())
	if e.Path != "" {
		out = out.With("schema_path", e.Path)
	}
	if e.Hint != "" {
		out = out.WithHint(e.Hint)
	}
	return out
}

// kind is what a schema node accepts.
type kind uint8

const (
	kAny     kind = iota // any JSON value
	kObject              // an object with declared properties (and maybe others)
	kArray               // an array of items
	kString              // a string
	kNumber              // any JSON number
	kInteger             // a number without fraction or exponent
	kLiteral             // one of a set of exact encodings (enum, const, true, false, null)
	kAnyOf               // any of alts
	kRef                 // the same as ref (a $ref, resolved)
)

// node is a compiled schema. Nodes form a graph ($ref may make cycles).
type node struct {
	kind kind
	sat  bool // some value matches it (computed after compiling)

	// kObject
	props   []prop
	nextReq []int // nextReq[i]: the first required property at index ≥ i, or len(props)
	keys    *trie // the declared names as JSON strings without the opening quote
	addl    *node // the schema of other properties; nil: none allowed

	// kArray
	items    *node
	minItems int
	maxItems int // -1: unbounded

	// kString
	minLen int
	maxLen int // -1: unbounded

	lits *trie   // kLiteral
	alts []*node // kAnyOf
	ref  *node   // kRef

	required []string // kObject while compiling: required names
}

type prop struct {
	name     string
	schema   *node
	required bool
}

// Grammar is a compiled JSON grammar: a schema, or any JSON value. It is
// immutable and safe for concurrent use.
type Grammar struct {
	root *node
}

var (
	anyNode = &node{kind: kAny, sat: true}
	// anyObject and anyArray are the frames' schemas for objects and arrays
	// of a kAny value.
	anyObject = &node{kind: kObject, sat: true, addl: anyNode, nextReq: []int{0}}
	anyArray  = &node{kind: kArray, sat: true, items: anyNode, maxItems: -1}
	anyString = &node{kind: kString, sat: true, maxLen: -1}
	anyNumber = &node{kind: kNumber, sat: true}
	// jsonWords are the literals a kAny value may start with t, f or n.
	jsonWords = newTrie([]string{"true", "false", "null"})
	anyWord   = &node{kind: kLiteral, sat: true, lits: jsonWords}
)

// JSON returns the grammar of any JSON value.
func JSON() *Grammar { return &Grammar{root: anyNode} }

// Keywords by what the compiler does with them.
var (
	// unsupported change which values are valid and cannot be enforced.
	unsupported = map[string]string{
		"not":                   "",
		"oneOf":                 "use anyOf, which the grammar supports",
		"if":                    "",
		"dependentSchemas":      "",
		"dependentRequired":     "",
		"dependencies":          "",
		"patternProperties":     "declare the properties by name",
		"propertyNames":         "",
		"minProperties":         "mark the properties that must appear as required",
		"maxProperties":         "",
		"unevaluatedProperties": "use additionalProperties",
		"unevaluatedItems":      "",
		"pattern":               "use enum for a fixed set of strings, or drop the pattern and check the value yourself",
		"minimum":               "drop the bound and check the value yourself",
		"maximum":               "drop the bound and check the value yourself",
		"exclusiveMinimum":      "drop the bound and check the value yourself",
		"exclusiveMaximum":      "drop the bound and check the value yourself",
		"multipleOf":            "",
		"contains":              "",
		"minContains":           "",
		"maxContains":           "",
		"prefixItems":           "use an object with named properties instead of a tuple",
		"additionalItems":       "",
		"$dynamicRef":           "use $ref",
		"$recursiveRef":         "use $ref",
	}
	// validation keywords the compiler enforces; a $ref or an anyOf may not
	// be combined with them.
	validation = []string{"type", "enum", "const", "properties", "required", "additionalProperties",
		"items", "minItems", "maxItems", "minLength", "maxLength", "uniqueItems"}
)

// compiler holds the state of one CompileSchema.
type compiler struct {
	doc      any
	byPtr    map[string]*node // compiled $ref targets
	nodes    []*node
	litBytes int
}

// CompileSchema compiles a JSON schema (draft 2020-12 and the drafts before
// it, as far as the keywords it supports go) into a grammar. It fails with
// a *SchemaError when the schema is not JSON, uses a keyword it cannot
// enforce, matches no value, or exceeds the limits above. It never panics,
// whatever the input, and takes time roughly proportional to its size.
func CompileSchema(raw json.RawMessage) (*Grammar, error) {
	doc, err := decodeOrdered(raw)
	if err != nil {
		return nil, &SchemaError{Message: "the schema is not valid JSON: " + err.Error(), Hint: "send the schema as a JSON object"}
	}
	c := &compiler{doc: doc, byPtr: map[string]*node{}}
	root, err := c.compile(doc, "", 0)
	if err != nil {
		return nil, err
	}
	c.solve()
	if !root.sat {
		return nil, &SchemaError{Message: "no JSON value satisfies the schema",
			Hint: "check required properties, enum values against type, minItems against maxItems, and $ref cycles that never end"}
	}
	for _, n := range c.nodes {
		c.finish(n)
	}
	return &Grammar{root: root}, nil
}

func (c *compiler) newNode(k kind) (*node, error) {
	if len(c.nodes) >= MaxSchemaNodes {
		return nil, &SchemaError{Message: fmt.Sprintf("the schema has more than %d subschemas", MaxSchemaNodes), Hint: "use a smaller schema"}
	}
	n := &node{kind: k, maxItems: -1, maxLen: -1}
	c.nodes = append(c.nodes, n)
	return n, nil
}

func errAt(path, hint, format string, a ...any) *SchemaError {
	return &SchemaError{Path: pathOrRoot(path), Message: fmt.Sprintf(format, a...), Hint: hint}
}

func pathOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// compile compiles the subschema v found at path.
func (c *compiler) compile(v any, path string, depth int) (*node, error) {
	if depth > MaxSchemaDepth {
		return nil, errAt(path, "flatten the schema or move parts into $defs", "subschemas nest more than %d deep", MaxSchemaDepth)
	}
	switch s := v.(type) {
	case bool:
		if s {
			return c.newNode(kAny)
		}
		return c.newNode(kAnyOf) // no alternatives: matches nothing
	case *omap:
		return c.compileObject(s, path, depth)
	}
	return nil, errAt(path, "", "a schema must be an object or a boolean")
}

func (c *compiler) compileObject(s *omap, path string, depth int) (*node, error) {
	for _, k := range s.keys {
		if hint, bad := unsupported[k]; bad {
			if k == "uniqueItems" {
				continue
			}
			return nil, errAt(path+"/"+escapePtr(k), hint, "the keyword %q is not supported in structured output", k)
		}
	}
	if u, ok := s.m["uniqueItems"]; ok && u != false {
		return nil, errAt(path+"/uniqueItems", "drop uniqueItems", "uniqueItems is not supported in structured output")
	}
	has := func(keys ...string) string {
		for _, k := range keys {
			if _, ok := s.m[k]; ok {
				return k
			}
		}
		return ""
	}
	if ref, ok := s.m["$ref"]; ok {
		if k := has(append(validation, "anyOf", "allOf")...); k != "" {
			return nil, errAt(path, "wrap them in allOf or move them into the referenced schema", "$ref together with %q is not supported", k)
		}
		r, ok := ref.(string)
		if !ok {
			return nil, errAt(path+"/$ref", "", "$ref must be a string")
		}
		return c.compileRef(r, path+"/$ref")
	}
	if all, ok := s.m["allOf"]; ok {
		list, ok := all.([]any)
		if !ok || len(list) != 1 {
			return nil, errAt(path+"/allOf", "merge the subschemas into one", "allOf is supported only with exactly one subschema")
		}
		if k := has(append(validation, "anyOf")...); k != "" {
			return nil, errAt(path, "move it into the allOf subschema", "allOf together with %q is not supported", k)
		}
		return c.compile(list[0], path+"/allOf/0", depth+1)
	}
	if anyOf, ok := s.m["anyOf"]; ok {
		if k := has(validation...); k != "" {
			return nil, errAt(path, "move it into each anyOf subschema", "anyOf together with %q is not supported", k)
		}
		list, ok := anyOf.([]any)
		if !ok || len(list) == 0 {
			return nil, errAt(path+"/anyOf", "", "anyOf must be a non-empty list of schemas")
		}
		n, err := c.newNode(kAnyOf)
		if err != nil {
			return nil, err
		}
		for i, sub := range list {
			a, err := c.compile(sub, fmt.Sprintf("%s/anyOf/%d", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			n.alts = append(n.alts, a)
		}
		return n, nil
	}

	types, err := schemaTypes(s, path)
	if err != nil {
		return nil, err
	}
	if _, ok := s.m["enum"]; ok {
		return c.compileEnum(s, path, types)
	}
	if _, ok := s.m["const"]; ok {
		return c.compileEnum(s, path, types)
	}
	var alts []*node
	for _, t := range types {
		n, err := c.compileType(s, t, path, depth)
		if err != nil {
			return nil, err
		}
		alts = append(alts, n)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	n, err := c.newNode(kAnyOf)
	if err != nil {
		return nil, err
	}
	n.alts = alts
	return n, nil
}

var allTypes = []string{"object", "array", "string", "number", "integer", "boolean", "null"}

// schemaTypes is the list of types s allows: its "type", or the one its
// keywords imply, or "any".
func schemaTypes(s *omap, path string) ([]string, error) {
	t, ok := s.m["type"]
	if !ok {
		switch {
		case hasAny(s, "properties", "required", "additionalProperties"):
			return []string{"object"}, nil
		case hasAny(s, "items", "minItems", "maxItems"):
			return []string{"array"}, nil
		case hasAny(s, "minLength", "maxLength"):
			return []string{"string"}, nil
		}
		return []string{"any"}, nil
	}
	var list []any
	switch v := t.(type) {
	case string:
		list = []any{v}
	case []any:
		list = v
	default:
		return nil, errAt(path+"/type", "", "type must be a string or a list of strings")
	}
	var out []string
	for _, e := range list {
		name, ok := e.(string)
		if !ok || !slices.Contains(allTypes, name) {
			return nil, errAt(path+"/type", "the types are object, array, string, number, integer, boolean and null", "unknown type")
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, errAt(path+"/type", "", "type must name at least one type")
	}
	// number includes integer.
	if slices.Contains(out, "number") {
		out = slices.DeleteFunc(out, func(s string) bool { return s == "integer" })
	}
	return out, nil
}

func hasAny(s *omap, keys ...string) bool {
	for _, k := range keys {
		if _, ok := s.m[k]; ok {
			return true
		}
	}
	return false
}

func (c *compiler) compileType(s *omap, t, path string, depth int) (*node, error) {
	switch t {
	case "any":
		return c.newNode(kAny)
	case "null":
		return c.literalNode([]string{"null"}, path)
	case "boolean":
		return c.literalNode([]string{"true", "false"}, path)
	case "number":
		return c.newNode(kNumber)
	case "integer":
		return c.newNode(kInteger)
	case "string":
		n, err := c.newNode(kString)
		if err != nil {
			return nil, err
		}
		if n.minLen, err = count(s, "minLength", 0, path); err != nil {
			return nil, err
		}
		if n.maxLen, err = count(s, "maxLength", -1, path); err != nil {
			return nil, err
		}
		return n, nil
	case "array":
		n, err := c.newNode(kArray)
		if err != nil {
			return nil, err
		}
		if n.minItems, err = count(s, "minItems", 0, path); err != nil {
			return nil, err
		}
		if n.maxItems, err = count(s, "maxItems", -1, path); err != nil {
			return nil, err
		}
		items, ok := s.m["items"]
		if !ok {
			items = true
		}
		if _, isList := items.([]any); isList {
			return nil, errAt(path+"/items", "use a single schema for items", "items as a list (a tuple) is not supported")
		}
		if n.items, err = c.compile(items, path+"/items", depth+1); err != nil {
			return nil, err
		}
		return n, nil
	}
	// object
	n, err := c.newNode(kObject)
	if err != nil {
		return nil, err
	}
	if p, ok := s.m["properties"]; ok {
		props, ok := p.(*omap)
		if !ok {
			return nil, errAt(path+"/properties", "", "properties must be an object")
		}
		for _, name := range props.keys {
			ps, err := c.compile(props.m[name], path+"/properties/"+escapePtr(name), depth+1)
			if err != nil {
				return nil, err
			}
			n.props = append(n.props, prop{name: name, schema: ps})
		}
	}
	if r, ok := s.m["required"]; ok {
		list, ok := r.([]any)
		if !ok {
			return nil, errAt(path+"/required", "", "required must be a list of property names")
		}
		for _, e := range list {
			name, ok := e.(string)
			if !ok {
				return nil, errAt(path+"/required", "", "required must be a list of property names")
			}
			n.required = append(n.required, name)
		}
	}
	switch a, ok := s.m["additionalProperties"]; {
	case !ok:
		// Absent, JSON Schema allows any other property. A generated object
		// keeps to the declared ones when there are some (every such object
		// is valid, and models otherwise invent fields); with none declared
		// it may have any.
		if len(n.props) == 0 {
			if n.addl, err = c.newNode(kAny); err != nil {
				return nil, err
			}
		}
	case a == false:
	default:
		if n.addl, err = c.compile(a, path+"/additionalProperties", depth+1); err != nil {
			return nil, err
		}
	}
	for _, name := range n.required {
		if !slices.ContainsFunc(n.props, func(p prop) bool { return p.name == name }) {
			if n.addl == nil {
				return nil, errAt(path+"/required", "declare it under properties",
					"the required property %q is not declared and additionalProperties is false", name)
			}
			n.props = append(n.props, prop{name: name, schema: n.addl})
		}
	}
	for i := range n.props {
		n.props[i].required = slices.Contains(n.required, n.props[i].name)
	}
	return n, nil
}

// count reads a non-negative integer keyword, or def when absent.
func count(s *omap, key string, def int, path string) (int, error) {
	v, ok := s.m[key]
	if !ok {
		return def, nil
	}
	num, ok := v.(json.Number)
	if ok {
		if f, err := num.Float64(); err == nil && f >= 0 && f == math.Trunc(f) {
			return int(min(f, 1<<30)), nil
		}
	}
	return 0, errAt(path+"/"+key, "", "%s must be a non-negative integer", key)
}

// compileEnum compiles enum or const: the values, of the allowed types,
// written as compact JSON.
func (c *compiler) compileEnum(s *omap, path string, types []string) (*node, error) {
	var values []any
	key := "enum"
	if v, ok := s.m["const"]; ok {
		key = "const"
		values = []any{v}
	}
	if e, ok := s.m["enum"]; ok {
		list, ok := e.([]any)
		if !ok {
			return nil, errAt(path+"/enum", "", "enum must be a list of values")
		}
		if key == "const" {
			values = slices.DeleteFunc(slices.Clone(list), func(v any) bool { return !jsonEqual(v, values[0]) })
		} else {
			values = list
		}
	}
	minLen, err := count(s, "minLength", 0, path)
	if err != nil {
		return nil, err
	}
	maxLen, err := count(s, "maxLength", -1, path)
	if err != nil {
		return nil, err
	}
	var lits []string
	for _, v := range values {
		if !typeMatches(v, types) {
			continue
		}
		if str, ok := v.(string); ok {
			n := len([]rune(str))
			if n < minLen || maxLen >= 0 && n > maxLen {
				continue
			}
		}
		b, err := encodeCompact(v)
		if err != nil {
			return nil, errAt(path+"/"+key, "", "cannot encode a value: %v", err)
		}
		if !slices.Contains(lits, b) {
			lits = append(lits, b)
		}
	}
	return c.literalNode(lits, path+"/"+key)
}

func (c *compiler) literalNode(lits []string, path string) (*node, error) {
	for _, l := range lits {
		c.litBytes += len(l)
	}
	if c.litBytes > MaxLiteralBytes {
		return nil, errAt(path, "use a smaller schema", "the schema's names and values exceed %d bytes", MaxLiteralBytes)
	}
	n, err := c.newNode(kLiteral)
	if err != nil {
		return nil, err
	}
	n.lits = newTrie(lits)
	return n, nil
}

func typeMatches(v any, types []string) bool {
	for _, t := range types {
		switch t {
		case "any":
			return true
		case "null":
			if v == nil {
				return true
			}
		case "boolean":
			if _, ok := v.(bool); ok {
				return true
			}
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "number":
			if _, ok := v.(json.Number); ok {
				return true
			}
		case "integer":
			if n, ok := v.(json.Number); ok {
				if f, err := n.Float64(); err == nil && f == math.Trunc(f) {
					return true
				}
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		case "object":
			if _, ok := v.(*omap); ok {
				return true
			}
		}
	}
	return false
}

func jsonEqual(a, b any) bool {
	ea, err1 := encodeCompact(a)
	eb, err2 := encodeCompact(b)
	return err1 == nil && err2 == nil && ea == eb
}

// compileRef compiles the target of a local $ref ("#", "#/$defs/x").
func (c *compiler) compileRef(ref, path string) (*node, error) {
	if n, ok := c.byPtr[ref]; ok {
		return n, nil
	}
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok || frag != "" && !strings.HasPrefix(frag, "/") {
		return nil, errAt(path, "put the definitions under $defs and refer to them as #/$defs/NAME",
			"only references inside the schema (#/…) are supported")
	}
	target, err := resolvePointer(c.doc, frag)
	if err != nil {
		return nil, errAt(path, "", "the reference %s: %v", ref, err)
	}
	n, err := c.newNode(kRef)
	if err != nil {
		return nil, err
	}
	c.byPtr[ref] = n
	// The target's depth starts again from 0: it is compiled once, and a
	// cycle through $ref ends here at the second visit.
	if n.ref, err = c.compile(target, frag, 0); err != nil {
		return nil, err
	}
	return n, nil
}

func resolvePointer(doc any, frag string) (any, error) {
	if frag == "" {
		return doc, nil
	}
	cur := doc
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch v := cur.(type) {
		case *omap:
			next, ok := v.m[tok]
			if !ok {
				return nil, fmt.Errorf("nothing at %q", tok)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil, fmt.Errorf("no element %q", tok)
			}
			cur = v[i]
		default:
			return nil, fmt.Errorf("nothing at %q", tok)
		}
	}
	return cur, nil
}

func escapePtr(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// solve computes which nodes match some value: the least fixed point, so
// that a $ref cycle that never ends (an object that requires itself)
// matches nothing.
func (c *compiler) solve() {
	for changed := true; changed; {
		changed = false
		// Children are made after their parents: going backwards settles
		// most schemas in one pass.
		for i := len(c.nodes) - 1; i >= 0; i-- {
			if n := c.nodes[i]; !n.sat && n.satisfiable() {
				n.sat = true
				changed = true
			}
		}
	}
}

func (n *node) satisfiable() bool {
	switch n.kind {
	case kObject:
		for _, p := range n.props {
			if p.required && !p.schema.sat {
				return false
			}
		}
		return true
	case kArray:
		return n.maxItems < 0 || n.minItems <= n.maxItems && (n.minItems == 0 || n.items.sat)
	case kString:
		return n.maxLen < 0 || n.minLen <= n.maxLen
	case kLiteral:
		return !n.lits.empty()
	case kAnyOf:
		return slices.ContainsFunc(n.alts, func(a *node) bool { return a.sat })
	case kRef:
		return n.ref.sat
	}
	return true
}

// finish drops what matches nothing (so that the matcher never walks into a
// dead end) and builds the object's key trie.
func (c *compiler) finish(n *node) {
	switch n.kind {
	case kObject:
		n.props = slices.DeleteFunc(n.props, func(p prop) bool { return !p.schema.sat })
		if n.addl != nil && !n.addl.sat {
			n.addl = nil
		}
		n.buildKeys()
		n.required = nil
	case kArray:
		if !n.items.sat {
			n.maxItems = 0
		}
	case kAnyOf:
		n.alts = slices.DeleteFunc(n.alts, func(a *node) bool { return !a.sat })
	}
}

// buildKeys builds an object's key trie and nextReq from its properties.
func (n *node) buildKeys() {
	names := make([]string, len(n.props))
	for i, p := range n.props {
		b, _ := encodeCompact(p.name)
		names[i] = b[1:] // without the opening quote
	}
	n.keys = newTrie(names)
	n.nextReq = make([]int, len(n.props)+1)
	next := len(n.props)
	n.nextReq[len(n.props)] = next
	for i := len(n.props) - 1; i >= 0; i-- {
		if n.props[i].required {
			next = i
		}
		n.nextReq[i] = next
	}
}

// omap is a JSON object that remembers the order of its keys.
type omap struct {
	keys []string
	m    map[string]any
}

// decodeOrdered decodes JSON into nil, bool, json.Number, string, []any and
// *omap, keeping the order of object keys (the order properties are
// generated in).
func decodeOrdered(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the schema")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > 2*MaxSchemaDepth+8 {
		return nil, fmt.Errorf("nested more than %d deep", 2*MaxSchemaDepth+8)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &omap{m: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				if _, dup := o.m[k]; !dup {
					o.keys = append(o.keys, k)
				}
				o.m[k] = v
			}
			_, err := dec.Token()
			return o, err
		case '[':
			list := []any{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	}
	return tok, nil
}

// encodeCompact writes v as compact JSON, objects in their original key
// order, without HTML escaping.
func encodeCompact(v any) (string, error) {
	var b bytes.Buffer
	if err := writeCompact(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeCompact(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case *omap:
		b.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCompact(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeCompact(b, t.m[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCompact(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case json.Number:
		b.WriteString(t.String())
	default:
		enc := json.NewEncoder(b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(t); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	return nil
}
