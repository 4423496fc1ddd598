package rbee_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/internal/testutil"
	"rbee/orchestrator"
)

func TestOrchestratorLifecycle(t *testing.T) {
	o := &rbee.Orchestrator{Config: orchestrator.Config{Addr: "127.0.0.1:0", Home: t.TempDir()}}
	assert.Empty(t, o.URL(), "no URL before Start")
	require.NoError(t, o.Start(t.Context()))
	url := o.URL()
	require.NotEmpty(t, url)
	require.NoError(t, o.Start(t.Context()), "Start is safe to call twice")
	assert.Equal(t, url, o.URL())
	require.NoError(t, o.Up(t.Context()))

	// Over the network and in process, the same queen answers.
	net := &rbee.Client{BaseURL: url}
	h, err := net.Health(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "ok", h.Status)
	assert.Equal(t, rbee.Version, h.Version)
	nodes, err := o.Client().Nodes(t.Context())
	require.NoError(t, err)
	assert.Empty(t, nodes)
	assert.Same(t, o.Client(), o.Client())

	require.NoError(t, o.Close())
	require.NoError(t, o.Close(), "Close is safe to call twice")
	assert.ErrorIs(t, o.Start(t.Context()), rbee.ErrOrchestratorClosed)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = net.Health(ctx)
	assert.Error(t, err, "nothing serves after Close")
}

func TestOrchestratorWithoutStart(t *testing.T) {
	o := &rbee.Orchestrator{Config: orchestrator.Config{Home: t.TempDir()}}
	defer o.Close()
	c := o.Client()
	h, err := c.Health(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "ok", h.Status)
	assert.Empty(t, o.URL())

	err = c.RemoveNode(t.Context(), "nowhere")
	assert.ErrorIs(t, err, rbee.ErrNodeNotFound)

	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "/health", nil)
	o.Handler().ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.status)
}

// TestOrchestratorQueueSettings: MaxQueue and QueueTimeout reach the queen,
// a pointer to 0 turning the queue off, as Client.Queue shows.
func TestOrchestratorQueueSettings(t *testing.T) {
	off := 0
	o := &rbee.Orchestrator{Config: orchestrator.Config{Home: t.TempDir(), LocalHivePort: testutil.FreePort(t), MaxQueue: &off, QueueTimeout: 90 * time.Second}}
	defer o.Close()
	st, err := o.Client().Queue(t.Context())
	require.NoError(t, err)
	assert.Equal(t, &rbee.QueueStatus{MaxQueue: 0, TimeoutMs: 90000, Queues: []rbee.Queue{}, Workers: []rbee.WorkerSlots{}}, st)

	d := &rbee.Orchestrator{Config: orchestrator.Config{Home: t.TempDir(), LocalHivePort: testutil.FreePort(t)}}
	defer d.Close()
	st, err = d.Client().Queue(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 256, st.MaxQueue, "unset is the default")
	assert.EqualValues(t, 5*60*1000, st.TimeoutMs)
}

type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return len(p), nil
}
func (r *recorder) WriteHeader(code int) { r.status = code }

func TestOrchestratorToken(t *testing.T) {
	const token = "orchestrator-token-0123456789"
	o := &rbee.Orchestrator{Config: orchestrator.Config{Addr: "127.0.0.1:0", Home: t.TempDir(), Token: token}}
	require.NoError(t, o.Up(t.Context()))
	defer o.Close()

	_, err := (&rbee.Client{BaseURL: o.URL()}).Workers(t.Context())
	assert.ErrorIs(t, err, rbee.ErrMissingAPIKey)
	_, err = (&rbee.Client{BaseURL: o.URL(), Token: "wrong-token-0123456789"}).Workers(t.Context())
	assert.ErrorIs(t, err, rbee.ErrInvalidAPIKey)
	_, err = (&rbee.Client{BaseURL: o.URL(), Token: token}).Nodes(t.Context())
	assert.NoError(t, err)
	_, err = o.Client().Nodes(t.Context())
	assert.NoError(t, err, "the in-process client carries the token")
}

func TestOrchestratorStartErrors(t *testing.T) {
	busy := &rbee.Orchestrator{Config: orchestrator.Config{Addr: "127.0.0.1:0", Home: t.TempDir()}}
	require.NoError(t, busy.Start(t.Context()))
	defer busy.Close()
	taken := busy.URL()[len("http://"):]

	tests := []struct {
		name string
		o    *rbee.Orchestrator
		want string
	}{
		{"public address without a token", &rbee.Orchestrator{Config: orchestrator.Config{Addr: "0.0.0.0:0", Home: t.TempDir()}}, "API key"},
		{"port in use", &rbee.Orchestrator{Config: orchestrator.Config{Addr: taken, Home: t.TempDir()}}, "address already in use"},
		{"bad port", &rbee.Orchestrator{Config: orchestrator.Config{Addr: "127.0.0.1:0", Home: t.TempDir(), LocalHivePort: 70000}}, "LocalHivePort"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.o.Close()
			err := tc.o.Start(t.Context())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, err, tc.o.Start(t.Context()), "a second Start returns the first result")
			assert.Empty(t, tc.o.URL())
		})
	}
}

// The embedded settings are the daemon's: promoted fields set them, and a
// Listener the program opened itself is where Start serves.
func TestOrchestratorSettingsAndListener(t *testing.T) {
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	o := &rbee.Orchestrator{}
	o.Home = t.TempDir()
	o.Listener = ln
	o.Token = "0123456789abcdef"
	require.NoError(t, o.Start(t.Context()))
	defer o.Close()
	assert.Equal(t, "http://"+ln.Addr().String(), o.URL())

	// The token set through the promoted field guards the queen.
	_, err = (&rbee.Client{BaseURL: o.URL()}).Nodes(t.Context())
	require.ErrorIs(t, err, rbee.ErrMissingAPIKey)
	nodes, err := (&rbee.Client{BaseURL: o.URL(), Token: o.Token}).Nodes(t.Context())
	require.NoError(t, err)
	assert.Empty(t, nodes)
}
