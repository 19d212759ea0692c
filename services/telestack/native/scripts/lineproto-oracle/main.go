// lineproto-oracle answers, for each line-protocol input, what InfluxDB's own parser makes of it.
//
// It calls models.ParsePointsWithPrecision, the function InfluxDB 2.7's /api/v2/write handler calls
// (http/points/points_parser.go), and prints one JSON object per input on stdout:
//
//	{"points": [{"measurement": "m", "tags": [["k","v"]], "fields": [["f","float","1.5"]],
//	             "time": "1700000000000000000" | null, "error": null | "..."}], "error": null | "..."}
//
// "fields" is the point's field iterator in line order (what storage writes), with the value as
// a string (floats in Go's shortest form); "time" is null when the line had no timestamp (the
// input is parsed twice with two default times to tell). A point's "error" is what its field
// iterator or Point.Fields() reports when a value that the scanner accepted does not convert. A parser panic is reported as
// an error starting with "panic:". Strings that are not valid UTF-8 are written as {"b64": "..."}.
//
// Input on stdin, one case after another: a header line "<precision> <byte length>\n" (precision
// ns, us, ms or s) and then exactly that many bytes. Long-running, so that 100k cases take seconds.
//
// `lineproto-oracle -go-strings FILE.go` instead prints every string literal of a Go source file,
// one JSON value per line (used once to extract InfluxDB's models/points_test.go cases).
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/influxdata/influxdb/v2/models"
)

type text string

func (t text) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(t)) {
		return json.Marshal(string(t))
	}
	return json.Marshal(map[string]string{"b64": base64.StdEncoding.EncodeToString([]byte(t))})
}

type point struct {
	Measurement text      `json:"measurement"`
	Tags        [][2]text `json:"tags"`
	Fields      [][3]text `json:"fields"`
	Time        *string   `json:"time"`
	Error       *string   `json:"error"`
}

type answer struct {
	Points []point `json:"points"`
	Error  *string `json:"error"`
}

// Two default times far from each other: a point whose time differs between the two parses had none.
var (
	defaultA = time.Unix(0, 1_000_000_000_000_000_000).UTC()
	defaultB = time.Unix(0, 1_500_000_000_000_000_000).UTC()
)

func parse(buf []byte, def time.Time, precision string) (pts []models.Point, err error) {
	defer func() {
		if r := recover(); r != nil {
			pts, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return models.ParsePointsWithPrecision(buf, def, precision)
}

func describe(p models.Point) (out point, fieldsErr error) {
	defer func() {
		if r := recover(); r != nil {
			fieldsErr = fmt.Errorf("panic: %v", r)
		}
	}()
	out.Measurement = text(p.Name())
	out.Tags = [][2]text{}
	for _, tag := range p.Tags() {
		out.Tags = append(out.Tags, [2]text{text(tag.Key), text(tag.Value)})
	}
	out.Fields = [][3]text{}
	iter := p.FieldIterator()
	for iter.Next() {
		key := text(iter.FieldKey())
		switch iter.Type() {
		case models.Float:
			v, err := iter.FloatValue()
			if err != nil {
				return out, err
			}
			out.Fields = append(out.Fields, [3]text{key, "float", text(strconv.FormatFloat(v, 'g', -1, 64))})
		case models.Integer:
			v, err := iter.IntegerValue()
			if err != nil {
				return out, err
			}
			out.Fields = append(out.Fields, [3]text{key, "integer", text(strconv.FormatInt(v, 10))})
		case models.Unsigned:
			v, err := iter.UnsignedValue()
			if err != nil {
				return out, err
			}
			out.Fields = append(out.Fields, [3]text{key, "unsigned", text(strconv.FormatUint(v, 10))})
		case models.Boolean:
			v, err := iter.BooleanValue()
			if err != nil {
				return out, err
			}
			out.Fields = append(out.Fields, [3]text{key, "boolean", text(strconv.FormatBool(v))})
		case models.String:
			out.Fields = append(out.Fields, [3]text{key, "string", text(iter.StringValue())})
		default:
			out.Fields = append(out.Fields, [3]text{key, "empty", ""})
		}
	}
	// Point.Fields() is what the v1 write path and Flux read; report its error too.
	if _, err := p.Fields(); err != nil {
		return out, err
	}
	return out, nil
}

func answerFor(buf []byte, precision string) answer {
	ans := answer{Points: []point{}}
	ptsA, errA := parse(buf, defaultA, precision)
	ptsB, _ := parse(buf, defaultB, precision)
	if errA != nil {
		s := errA.Error()
		ans.Error = &s
	}
	for i, p := range ptsA {
		timeB := int64(0)
		if i < len(ptsB) {
			timeB = ptsB[i].UnixNano()
		}
		out, err := describe(p)
		if timeB == p.UnixNano() { // the same under both default times: the line carried its own
			s := strconv.FormatInt(p.UnixNano(), 10)
			out.Time = &s
		} else {
			out.Time = nil
		}
		if err != nil {
			s := err.Error()
			out.Error = &s
		}
		ans.Points = append(ans.Points, out)
	}
	return ans
}

func serve(in io.Reader, out io.Writer) error {
	r := bufio.NewReaderSize(in, 1<<20)
	w := bufio.NewWriterSize(out, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for {
		header, err := r.ReadString('\n')
		if err == io.EOF && header == "" {
			return w.Flush()
		}
		if err != nil {
			return fmt.Errorf("reading header: %w", err)
		}
		precision, size, ok := strings.Cut(strings.TrimSpace(header), " ")
		n, convErr := strconv.Atoi(size)
		if !ok || convErr != nil || n < 0 || !models.ValidPrecision(precision) {
			return fmt.Errorf("bad header %q: want \"<ns|us|ms|s> <length>\"", header)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("reading %d bytes: %w", n, err)
		}
		if err := enc.Encode(answerFor(buf, precision)); err != nil {
			return err
		}
		// Answer as soon as the input has been read: the caller may wait for each answer.
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

func goStrings(path string) error {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	var failed error
	ast.Inspect(file, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			failed = err
			return false
		}
		if err := enc.Encode(text(s)); err != nil {
			failed = err
			return false
		}
		return true
	})
	return failed
}

func main() {
	var err error
	if len(os.Args) == 3 && os.Args[1] == "-go-strings" {
		err = goStrings(os.Args[2])
	} else if len(os.Args) == 1 {
		err = serve(os.Stdin, os.Stdout)
	} else {
		err = fmt.Errorf("usage: lineproto-oracle < cases  |  lineproto-oracle -go-strings FILE.go")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lineproto-oracle:", err)
		os.Exit(1)
	}
}
