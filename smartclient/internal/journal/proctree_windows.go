//go:build windows

package journal

import (
	"fmt"
	"os/exec"
	"unsafe"

	"golang.org/x/sys/windows"
)

// procTree is the job object a post-install step runs in: every process
// it starts joins the job, and the job can be ended whole.
type procTree struct{ job windows.Handle }

// ownTree puts the step in a process group of its own, as on Unix, and
// gives a console step (a .bat or .cmd, a console program) a console
// without a window (CREATE_NO_WINDOW): started from smartclientw.exe, which
// has none, it would otherwise get a new, visible one flashing on the
// user's screen; its output goes to a file anyway. The rest of its
// SysProcAttr is kept.
func ownTree(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &windows.SysProcAttr{}
	}
	cmd.SysProcAttr.CreationFlags |= windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_NO_WINDOW
}

// contain puts a started step in a new job object that ends its processes
// when it is closed. A child the step starts before it is assigned escapes
// the job: the step is assigned right after it starts.
func contain(cmd *exec.Cmd) (*procTree, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("creating a job object: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{
		BasicLimitInformation: windows.JOBOBJECT_BASIC_LIMIT_INFORMATION{LimitFlags: windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE},
	}
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("setting up the job object: %w", err)
	}
	p, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(cmd.Process.Pid))
	if err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("opening the step's process: %w", err)
	}
	defer windows.CloseHandle(p)
	if err := windows.AssignProcessToJobObject(job, p); err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("assigning the step to its job object: %w", err)
	}
	return &procTree{job: job}, nil
}

// kill ends every process of the job.
func (t *procTree) kill() error {
	if t == nil {
		return nil
	}
	return windows.TerminateJobObject(t.job, 1)
}

func (t *procTree) close() { windows.CloseHandle(t.job) }
