package tests

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestDocumentedCaddyfiles adapts every complete Caddyfile shown in
// README.md and docs/*.md (a ```caddyfile block) and checks that `caddy fmt`
// would leave it as it is. A block marked "```caddyfile fragment" is part of
// a Caddyfile (a global option's body, a directive's syntax, a plugin's
// directives) and is not checked.
func TestDocumentedCaddyfiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	adapter := caddyconfig.GetAdapter("caddyfile")
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, blk := range caddyfileBlocks(b) {
			name := filepath.Base(f) + ":" + blk.line
			checked++
			if _, warns, err := adapter.Adapt([]byte(blk.text), map[string]any{"filename": name}); err != nil {
				t.Errorf("%s: caddy adapt: %v", name, err)
			} else {
				for _, w := range warns {
					if !strings.Contains(w.Message, "formatted") {
						t.Errorf("%s: caddy adapt warns: %s", name, w.Message)
					}
				}
			}
			if got := string(caddyfile.Format([]byte(blk.text))); strings.TrimSpace(got) != strings.TrimSpace(blk.text) {
				t.Errorf("%s: caddy fmt would change it to:\n%s", name, got)
			}
		}
	}
	if checked < 4 {
		t.Errorf("only %d Caddyfiles found in the docs; the block marker changed?", checked)
	}
}

type docBlock struct{ line, text string }

// caddyfileBlocks returns the ```caddyfile blocks of a Markdown file.
func caddyfileBlocks(md []byte) []docBlock {
	var out []docBlock
	var cur *bytes.Buffer
	var start int
	var indent string // of the fence, as in a list item; the block's lines have it too
	sc := bufio.NewScanner(bytes.NewReader(md))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```caddyfile":
			cur, start = &bytes.Buffer{}, n
			indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, docBlock{line: strconv.Itoa(start), text: cur.String()})
			cur = nil
		case cur != nil:
			cur.WriteString(strings.TrimPrefix(line, indent) + "\n")
		}
	}
	return out
}
