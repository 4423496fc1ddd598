package grammar

import "slices"

// trie is a set of byte strings (object keys, enum values) that a frame
// walks a byte at a time. Node 0 is the root.
type trie struct {
	nodes []trieNode
}

type trieNode struct {
	edges []trieEdge // sorted by byte
	term  int32      // index of the string that ends here, or -1
	// ids are the indices of the strings below this node (itself included),
	// ascending: an object frame uses them to tell whether a key prefix can
	// still become a property it may write next.
	ids []int32
}

type trieEdge struct {
	b  byte
	to int32
}

func newTrie(strs []string) *trie {
	t := &trie{nodes: []trieNode{{term: -1}}}
	for i, s := range strs {
		cur := int32(0)
		t.nodes[0].ids = append(t.nodes[0].ids, int32(i))
		for j := 0; j < len(s); j++ {
			next := t.child(cur, s[j])
			if next < 0 {
				next = int32(len(t.nodes))
				t.nodes = append(t.nodes, trieNode{term: -1})
				n := &t.nodes[cur]
				k, _ := slices.BinarySearchFunc(n.edges, s[j], func(e trieEdge, b byte) int { return int(e.b) - int(b) })
				n.edges = slices.Insert(n.edges, k, trieEdge{b: s[j], to: next})
			}
			cur = next
			t.nodes[cur].ids = append(t.nodes[cur].ids, int32(i))
		}
		if t.nodes[cur].term < 0 {
			t.nodes[cur].term = int32(i)
		}
	}
	return t
}

// child is the node after byte b from node n, or -1.
func (t *trie) child(n int32, b byte) int32 {
	for _, e := range t.nodes[n].edges {
		if e.b == b {
			return e.to
		}
		if e.b > b {
			break
		}
	}
	return -1
}

func (t *trie) empty() bool { return len(t.nodes[0].ids) == 0 }

// anyIn reports whether a string with index in [lo, hi] passes through n.
func (t *trie) anyIn(n int32, lo, hi int) bool {
	for _, id := range t.nodes[n].ids {
		if int(id) >= lo {
			return int(id) <= hi
		}
	}
	return false
}
