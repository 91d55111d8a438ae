// authorize -> call the model -> commit, against `allotment serve`, with net/http.
//
//	ALLOTMENT_URL=http://127.0.0.1:8080 ALLOTMENT_KEY=ak_... go run main.go
//
// A refused call answers 402 with a payload the end user can be shown.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
)

type usage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

func post(path string, body any, out any) (int, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	request, err := http.NewRequest(http.MethodPost, os.Getenv("ALLOTMENT_URL")+path, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	request.Header.Set("Authorization", "Bearer "+os.Getenv("ALLOTMENT_KEY"))
	request.Header.Set("Content-Type", "application/json")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return 0, err
	}
	defer response.Body.Close()
	return response.StatusCode, json.NewDecoder(response.Body).Decode(out)
}

func callModel(prompt string) usage {
	// Your provider call goes here; this example pretends it used this much.
	return usage{InputTokens: len(prompt), OutputTokens: 120}
}

func main() {
	id := make([]byte, 16)
	rand.Read(id)
	requestID := hex.EncodeToString(id)
	subject := map[string]string{"tenant": "acme", "user": "u1", "feature": "summarize"}

	var decision map[string]any
	status, err := post("/v1/authorize", map[string]any{
		"request_id": requestID, "subject": subject, "provider": "openai",
		"model": "gpt-4o-mini", "estimate": map[string]int{"output_tokens": 512},
	}, &decision)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if status == http.StatusPaymentRequired {
		refusal := decision["error"].(map[string]any)
		fmt.Printf("refused: %v (%v) resets at %v\n", refusal["reason"], refusal["message"], refusal["resets_at"])
		return
	}
	if status != http.StatusOK {
		fmt.Fprintf(os.Stderr, "authorize: HTTP %d\n", status)
		os.Exit(1)
	}
	var committed struct {
		Event struct {
			Usage struct {
				CostMicros int `json:"cost_micros"`
			} `json:"usage"`
		} `json:"event"`
	}
	used := callModel("Summarise the meeting notes.")
	if _, err := post("/v1/commit", map[string]any{"request_id": requestID, "usage": used}, &committed); err != nil {
		var ignored map[string]any
		post("/v1/release", map[string]any{"request_id": requestID, "reason": "provider_error"}, &ignored)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("allowed and committed: cost %d micro-USD\n", committed.Event.Usage.CostMicros)
}
