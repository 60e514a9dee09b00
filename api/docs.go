package api

import (
	"html/template"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// The reference page is rendered here from the OpenAPI document, with no
// script and nothing fetched from elsewhere (huma's default page loads
// its renderer from a CDN, which partners' networks and this one may not
// reach). The document itself is /v1/openapi.json.

var docsPage = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f4f4f4;padding:.1rem .3rem}h2{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}
.m{font-weight:bold;display:inline-block;min-width:4rem}</style></head><body>
<h1>{{.Title}} {{.Version}}</h1><p>{{.Description}}</p>
<p>OpenAPI 3.1: <a href="/v1/openapi.json">/v1/openapi.json</a> · tokens: <code>POST /oauth/token</code> (client credentials)</p>
{{range .Ops}}<h2><span class="m">{{.Method}}</span> <code>{{.Path}}</code></h2>
<p><b>{{.Summary}}</b>{{if .Scope}} · scope <code>{{.Scope}}</code>{{end}}</p><p>{{.Description}}</p>
{{if .Request}}<p>Request body: <code>{{.Request}}</code></p>{{end}}
<p>Answers: {{.Answers}}</p>{{end}}
</body></html>`))

type docOp struct {
	Method, Path, Summary, Description, Scope, Request, Answers string
}

func (s *Server) docs(w http.ResponseWriter, _ *http.Request) {
	oa := s.api.OpenAPI()
	var ops []docOp
	for path, item := range oa.Paths {
		for method, op := range map[string]*huma.Operation{"GET": item.Get, "POST": item.Post, "PUT": item.Put, "DELETE": item.Delete} {
			if op == nil {
				continue
			}
			d := docOp{Method: method, Path: path, Summary: op.Summary, Description: op.Description}
			for _, sec := range op.Security {
				for _, sc := range sec {
					d.Scope = strings.Join(sc, " ")
				}
			}
			if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Content {
					if mt.Schema != nil && mt.Schema.Ref != "" {
						d.Request = strings.TrimPrefix(mt.Schema.Ref, "#/components/schemas/")
					}
				}
			}
			var codes []string
			for code := range op.Responses {
				codes = append(codes, code)
			}
			slices.Sort(codes)
			d.Answers = strings.Join(codes, ", ")
			ops = append(ops, d)
		}
	}
	slices.SortFunc(ops, func(a, b docOp) int { return strings.Compare(a.Path+a.Method, b.Path+b.Method) })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_ = docsPage.Execute(w, map[string]any{"Title": oa.Info.Title, "Version": oa.Info.Version, "Description": oa.Info.Description, "Ops": ops})
}
