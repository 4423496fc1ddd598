package loadgen

import (
	"time"
)

// Where the output token counts of a report come from.
const (
	FromUsage  = "usage"  // every successful request's usage.completion_tokens
	FromChunks = "chunks" // chunks with text, counted: the server reported no usage
	FromMixed  = "mixed"  // usage for some requests, chunks for others
)

// Report is a run's figures; its JSON field names are stable. Times are in
// milliseconds and rates per second of the run's duration, from the first
// request sent to the last one ended. Only successful requests count in the
// token figures and the latency statistics.
type Report struct {
	URL          string `json:"url"`      // where the requests went
	Endpoint     string `json:"endpoint"` // completions or chat
	Model        string `json:"model"`
	Concurrency  int    `json:"concurrency"`
	Requests     int    `json:"requests"` // asked for
	PromptTokens int    `json:"prompt_tokens_requested"`
	// PromptWords is the words of each prompt, and TokensPerWord the
	// server's tokens per word that Calibrate measured (null when the
	// prompts were not calibrated).
	PromptWords   int      `json:"prompt_words"`
	TokensPerWord *float64 `json:"tokens_per_word"`
	MaxTokens     int      `json:"max_tokens"`

	Completed   int  `json:"completed"`   // requests that succeeded
	Failed      int  `json:"failed"`      // requests that failed
	Interrupted bool `json:"interrupted"` // the run was stopped before its end

	DurationS        float64 `json:"duration_s"`
	RequestsPerS     float64 `json:"requests_per_s"`      // completed requests
	OutputTokensPerS float64 `json:"output_tokens_per_s"` // all completed requests' output tokens

	TotalOutputTokens int     `json:"total_output_tokens"`
	MeanOutputTokens  float64 `json:"mean_output_tokens"`
	OutputTokensFrom  string  `json:"output_tokens_from"` // usage, chunks or mixed; "" with no completed request
	// The prompt figures count the requests whose server reported
	// usage.prompt_tokens; MeanPromptTokens is null when none did.
	TotalPromptTokens int      `json:"total_prompt_tokens"`
	MeanPromptTokens  *float64 `json:"mean_prompt_tokens"`

	// Statistics, null when there is nothing to measure: time to first
	// token (from sending the request to the first chunk with text),
	// inter-token latency (between consecutive chunks with text) and
	// end-to-end latency (from sending to the end of the stream).
	TTFT    *Stats `json:"ttft_ms"`
	ITL     *Stats `json:"itl_ms"`
	Latency *Stats `json:"e2e_latency_ms"`

	// Errors counts the failed requests by RequestError.Code, and
	// ErrorMessages holds the first message seen for each code.
	Errors        map[string]int    `json:"errors"`
	ErrorMessages map[string]string `json:"error_messages"`
}

// Summarize reports results, the requests of one run that ended.
func (g *Generator) Summarize(results []Result) *Report {
	c := g.cfg
	rep := &Report{URL: g.endpoint, Endpoint: c.Endpoint, Model: c.Model, Concurrency: c.Concurrency,
		Requests: c.Requests, PromptTokens: c.PromptTokens, MaxTokens: c.MaxTokens,
		PromptWords: g.words, TokensPerWord: g.perWord,
		Errors: map[string]int{}, ErrorMessages: map[string]string{}}
	var first, last time.Time
	var ttft, itl, e2e []time.Duration
	var usage, chunks, withPrompt int
	for _, r := range results {
		if r.Interrupted {
			continue
		}
		if first.IsZero() || r.Start.Before(first) {
			first = r.Start
		}
		if r.End.After(last) {
			last = r.End
		}
		if r.Err != nil {
			rep.Failed++
			rep.Errors[r.Err.Code]++
			if _, ok := rep.ErrorMessages[r.Err.Code]; !ok {
				rep.ErrorMessages[r.Err.Code] = r.Err.Message
			}
			continue
		}
		rep.Completed++
		rep.TotalOutputTokens += r.OutputTokens
		if r.OutputFromUsage {
			usage++
		} else {
			chunks++
		}
		if r.PromptTokens >= 0 {
			rep.TotalPromptTokens += r.PromptTokens
			withPrompt++
		}
		if !r.FirstToken.IsZero() {
			ttft = append(ttft, r.FirstToken.Sub(r.Start))
		}
		itl = append(itl, r.ITL...)
		e2e = append(e2e, r.End.Sub(r.Start))
	}
	if d := last.Sub(first); d > 0 {
		rep.DurationS = d.Seconds()
		rep.RequestsPerS = float64(rep.Completed) / rep.DurationS
		rep.OutputTokensPerS = float64(rep.TotalOutputTokens) / rep.DurationS
	}
	if rep.Completed > 0 {
		rep.MeanOutputTokens = float64(rep.TotalOutputTokens) / float64(rep.Completed)
	}
	switch {
	case usage > 0 && chunks > 0:
		rep.OutputTokensFrom = FromMixed
	case usage > 0:
		rep.OutputTokensFrom = FromUsage
	case chunks > 0:
		rep.OutputTokensFrom = FromChunks
	}
	if withPrompt > 0 {
		m := float64(rep.TotalPromptTokens) / float64(withPrompt)
		rep.MeanPromptTokens = &m
	}
	rep.TTFT, rep.ITL, rep.Latency = summarise(ttft), summarise(itl), summarise(e2e)
	return rep
}
