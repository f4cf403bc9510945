package adminapi

import (
	_ "embed"
	"net/http"
)

// openAPI describes the admin API, and openAPISelf the self-service API,
// as OpenAPI 3.1 documents; tests check them against the handlers.
var (
	//go:embed openapi.json
	openAPI []byte
	//go:embed openapi-self.json
	openAPISelf []byte
)

const openAPIPattern = "GET /openapi.json"

// adminOpenAPI returns the OpenAPI 3.1 description of the admin API, served at
// GET /openapi.json. Callers must not modify it.
func adminOpenAPI() []byte { return openAPI }

// selfOpenAPI returns the OpenAPI 3.1 description of the self-service API,
// for the self-service handler to serve at its GET /openapi.json. Callers
// must not modify it.
func selfOpenAPI() []byte { return openAPISelf }

// serveOpenAPI writes doc as a JSON response; the description is public.
func serveOpenAPI(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(doc)
	})
}
