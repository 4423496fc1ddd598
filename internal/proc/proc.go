// Package proc starts and stops rbee's child processes: the hive a queen
// starts for the local node, the workers a hive spawns, the queen an
// ephemeral keeper starts. Children get their own process group (a Ctrl+C at
// the terminal reaches only the keeper, which then shuts down what it
// started, in order) and, on Linux, SIGTERM if their parent dies.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Spec describes a child process.
type Spec struct {
	Path string
	Args []string // without the program name
	Env  []string // added to the parent's environment
	Dir  string
	// LogFile, when set, receives the child's stdout and stderr (appended,
	// created 0600). Otherwise Stdout and Stderr are used (nil discards).
	LogFile        string
	Stdout, Stderr io.Writer
}

// Process is a started child. Its one goroutine waits for the exit.
type Process struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logFile *os.File
}

// Start starts the child.
func Start(s Spec) (*Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = sysProcAttr()
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	if s.LogFile != "" {
		f, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		p.logFile = f
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	}
	if err := cmd.Start(); err != nil {
		if p.logFile != nil {
			p.logFile.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", s.Path, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		if p.logFile != nil {
			p.logFile.Close()
		}
		close(p.exited)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the child has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits for the exit and returns its error (nil for exit status 0).
func (p *Process) Wait() error {
	<-p.exited
	return p.waitErr
}

// ExitCode returns the exit status once exited (-1 when killed by a signal
// or still running).
func (p *Process) ExitCode() int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Signal sends sig to the child (nothing if it has exited).
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Stop asks the child to exit with SIGTERM, waits up to grace, then kills it
// (SIGKILL) and waits for the exit. It returns early if ctx ends, after the kill.
func (p *Process) Stop(ctx context.Context, grace time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = p.Signal(syscall.SIGKILL)
	<-p.exited
	return nil
}

// WaitTimeout waits up to d for the exit and reports whether it happened.
func (p *Process) WaitTimeout(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}
