//go:build windows

package desktop

import (
	"debug/pe"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// The Win32 calls the window needs. golang.org/x/sys/windows has the
// types and MessageBox but not the window calls; these few are declared
// here rather than taking a Win32 binding library for them (the pure-Go
// ones, lxn/win and its forks, are no longer maintained).
var (
	user32   = windows.NewLazySystemDLL("user32.dll")
	kernel32 = windows.NewLazySystemDLL("kernel32.dll")
	gdi32    = windows.NewLazySystemDLL("gdi32.dll")
	comctl32 = windows.NewLazySystemDLL("comctl32.dll")

	procRegisterClassExW  = user32.NewProc("RegisterClassExW")
	procCreateWindowExW   = user32.NewProc("CreateWindowExW")
	procDefWindowProcW    = user32.NewProc("DefWindowProcW")
	procDestroyWindow     = user32.NewProc("DestroyWindow")
	procGetMessageW       = user32.NewProc("GetMessageW")
	procTranslateMessage  = user32.NewProc("TranslateMessage")
	procDispatchMessageW  = user32.NewProc("DispatchMessageW")
	procIsDialogMessageW  = user32.NewProc("IsDialogMessageW")
	procPostMessageW      = user32.NewProc("PostMessageW")
	procSendMessageW      = user32.NewProc("SendMessageW")
	procPostQuitMessage   = user32.NewProc("PostQuitMessage")
	procSetWindowTextW    = user32.NewProc("SetWindowTextW")
	procShowWindow        = user32.NewProc("ShowWindow")
	procSetForegroundWnd  = user32.NewProc("SetForegroundWindow")
	procSetFocus          = user32.NewProc("SetFocus")
	procEnableWindow      = user32.NewProc("EnableWindow")
	procSetTimer          = user32.NewProc("SetTimer")
	procLoadCursorW       = user32.NewProc("LoadCursorW")
	procGetSystemMetrics  = user32.NewProc("GetSystemMetrics")
	procAdjustWindowRect  = user32.NewProc("AdjustWindowRectEx")
	procGetModuleHandleW  = kernel32.NewProc("GetModuleHandleW")
	procCreateActCtxW     = kernel32.NewProc("CreateActCtxW")
	procActivateActCtx    = kernel32.NewProc("ActivateActCtx")
	procDeactivateActCtx  = kernel32.NewProc("DeactivateActCtx")
	procReleaseActCtx     = kernel32.NewProc("ReleaseActCtx")
	procDeleteObject      = gdi32.NewProc("DeleteObject")
	procKillTimer         = user32.NewProc("KillTimer")
	procGetLastActPopup   = user32.NewProc("GetLastActivePopup")
	procEndDialog         = user32.NewProc("EndDialog")
	procGetStockObject    = gdi32.NewProc("GetStockObject")
	procCreateFontIndirW  = gdi32.NewProc("CreateFontIndirectW")
	procSystemParamsInfoW = user32.NewProc("SystemParametersInfoW")
	procSetProcessDPIAwar = user32.NewProc("SetProcessDPIAware")
	procGetDC             = user32.NewProc("GetDC")
	procReleaseDC         = user32.NewProc("ReleaseDC")
	procGetDeviceCaps     = gdi32.NewProc("GetDeviceCaps")
	procInitCommonCtrlsEx = comctl32.NewProc("InitCommonControlsEx")
)

const (
	wmDestroy      = 0x0002
	wmClose        = 0x0010
	wmSetFont      = 0x0030
	wmCommand      = 0x0111
	wmTimer        = 0x0113
	wmApp          = 0x8000
	wmRun          = wmApp + 1 // run the queued calls
	wmQuit         = wmApp + 2 // destroy the window (Close)
	pbmSetRange32  = 0x0406
	pbmSetPos      = 0x0402
	wsOverlapped   = 0x00000000
	wsCaption      = 0x00C00000
	wsSysMenu      = 0x00080000
	wsMinimizeBox  = 0x00020000
	wsChild        = 0x40000000
	wsVisible      = 0x10000000
	wsTabStop      = 0x00010000
	wsExAppWindow  = 0x00040000
	wsExDlgFrame   = 0x00000001
	ssEndEllipsis  = 0x00004000
	ssNoPrefix     = 0x00000080
	bsDefPush      = 0x00000001
	idCancel       = 2
	swShowNormal   = 1
	smCxScreen     = 0
	smCyScreen     = 1
	colorBtnFace   = 15
	idcArrow       = 32512
	defaultGUIFont = 17
	iccProgress    = 0x00000020
	timerID        = 1 // redraw
	askTimerID     = 2 // a question's time is up
	mbOK           = 0x00000000
	mbYesNo        = 0x00000004
	mbIconError    = 0x00000010
	mbIconQuestion = 0x00000020
	mbSetForegrnd  = 0x00010000
	idYes          = 6
	idNo           = 7
)

type wndClassEx struct {
	size       uint32
	style      uint32
	wndProc    uintptr
	clsExtra   int32
	wndExtra   int32
	instance   windows.Handle
	icon       windows.Handle
	cursor     windows.Handle
	background windows.Handle
	menuName   *uint16
	className  *uint16
	iconSm     windows.Handle
}

type point struct{ x, y int32 }

type msg struct {
	hwnd    windows.HWND
	message uint32
	wParam  uintptr
	lParam  uintptr
	time    uint32
	pt      point
	private uint32
}

type rect struct{ left, top, right, bottom int32 }

// actCtx is ACTCTXW.
type actCtx struct {
	size                  uint32
	flags                 uint32
	source                *uint16
	processorArchitecture uint16
	langID                uint16
	assemblyDirectory     *uint16
	resourceName          *uint16
	applicationName       *uint16
	module                windows.Handle
}

// The layout of the window's client area, in pixels at 96 dots per inch
// (100%); scaled to the screen's.
const (
	clientW  = 460
	clientH  = 136
	margin   = 16
	buttonW  = 88
	buttonH  = 26
	lineH    = 20
	barH     = 18
	controls = clientW - 2*margin
)

// The window class, registered once; the window procedure is one callback
// for the process (Windows callbacks from Go are a limited resource) that
// finds its window in windowsByHandle.
var (
	classOnce       sync.Once
	classErr        error
	className       = windows.StringToUTF16Ptr("SmartsyncProgress")
	windowsMu       sync.Mutex
	windowsByHandle = map[windows.HWND]*native{}
)

// native is a Win32 progress window.
type native struct {
	onCancel func()

	ready chan error
	done  chan struct{} // the message loop has returned

	// Set on the window's thread only.
	hwnd, text, bar, detail, button windows.HWND
	font                            uintptr // made for it: deleted with it; 0 for the stock font
	opened                          time.Time
	shown                           bool
	drawn                           State

	mu        sync.Mutex
	state     State
	cancelled bool
	closing   bool
	queue     []func()
}

// OpenNative opens a Win32 progress window titled Title; it appears
// showAfter later. onCancel is called once, from a goroutine of its own,
// when the user cancels (the Cancel button, Escape, the close box).
func OpenNative(onCancel func()) (Window, error) {
	w := &native{onCancel: onCancel, ready: make(chan error, 1), done: make(chan struct{})}
	go w.run()
	if err := <-w.ready; err != nil {
		return nil, err
	}
	return w, nil
}

// run is the window's thread: it makes the window and runs its message
// loop until the window is destroyed. The goroutine keeps its OS thread
// locked to the end, so that the thread ends with it (and its activation
// context with it).
func (w *native) run() {
	runtime.LockOSThread()
	defer close(w.done)
	defer visualStyles()()
	if err := w.create(); err != nil {
		w.ready <- err
		return
	}
	w.opened = time.Now()
	w.ready <- nil
	var m msg
	for {
		r, _, err := procGetMessageW.Call(uintptr(unsafe.Pointer(&m)), 0, 0, 0)
		switch int32(r) {
		case 0: // WM_QUIT
			return
		case -1:
			_ = err // a bad argument: nothing to do but stop
			return
		}
		// IsDialogMessage gives the window a dialog's keys: Tab, and
		// Escape and Enter as the Cancel button.
		if ok, _, _ := procIsDialogMessageW.Call(uintptr(w.hwnd), uintptr(unsafe.Pointer(&m))); ok != 0 {
			continue
		}
		procTranslateMessage.Call(uintptr(unsafe.Pointer(&m)))
		procDispatchMessageW.Call(uintptr(unsafe.Pointer(&m)))
	}
}

// manifest asks for comctl32 version 6: the controls drawn with the
// system's visual styles.
const manifest = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<assembly xmlns="urn:schemas-microsoft-com:asm.v1" manifestVersion="1.0">
  <dependency>
    <dependentAssembly>
      <assemblyIdentity type="win32" name="Microsoft.Windows.Common-Controls" version="6.0.0.0"
        processorArchitecture="*" publicKeyToken="6595b64144ccf1df" language="*"/>
    </dependentAssembly>
  </dependency>
</assembly>
`

// visualStyles activates, on this thread, an activation context made from
// manifest, before comctl32 is loaded and the controls made: so they are
// comctl32 version 6's, drawn with visual styles. It is best effort: the
// controls work without it. It returns what deactivates and releases the
// context, once the window is gone.
func visualStyles() (undo func()) {
	undo = func() {}
	dir, err := os.MkdirTemp("", "smartclient-ui")
	if err != nil {
		return undo
	}
	defer os.RemoveAll(dir) // the context is read at its creation
	path := filepath.Join(dir, "smartclient.manifest")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		return undo
	}
	src, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return undo
	}
	ac := actCtx{source: src}
	ac.size = uint32(unsafe.Sizeof(ac))
	h, _, _ := procCreateActCtxW.Call(uintptr(unsafe.Pointer(&ac)))
	if windows.Handle(h) == windows.InvalidHandle {
		return undo
	}
	var cookie uintptr
	if r, _, _ := procActivateActCtx.Call(h, uintptr(unsafe.Pointer(&cookie))); r == 0 {
		procReleaseActCtx.Call(h)
		return undo
	}
	return func() {
		procDeactivateActCtx.Call(0, cookie)
		procReleaseActCtx.Call(h)
	}
}

// create registers the class once and makes the window and its controls,
// hidden.
func (w *native) create() error {
	inst, _, _ := procGetModuleHandleW.Call(0)
	// ICC_PROGRESS_CLASS registers msctls_progress32 (comctl32 5 needs
	// it; 6 registers its classes when loaded).
	icc := struct{ size, classes uint32 }{8, iccProgress}
	if err := procInitCommonCtrlsEx.Find(); err != nil {
		return fmt.Errorf("desktop: comctl32: %w", err)
	}
	procInitCommonCtrlsEx.Call(uintptr(unsafe.Pointer(&icc)))
	classOnce.Do(func() {
		cursor, _, _ := procLoadCursorW.Call(0, idcArrow)
		wc := wndClassEx{
			wndProc:    windows.NewCallback(wndProc),
			instance:   windows.Handle(inst),
			cursor:     windows.Handle(cursor),
			background: windows.Handle(colorBtnFace + 1),
			className:  className,
		}
		wc.size = uint32(unsafe.Sizeof(wc))
		if r, _, err := procRegisterClassExW.Call(uintptr(unsafe.Pointer(&wc))); r == 0 {
			classErr = fmt.Errorf("desktop: RegisterClassEx: %w", err)
		}
	})
	if classErr != nil {
		return classErr
	}
	style := uintptr(wsOverlapped | wsCaption | wsSysMenu | wsMinimizeBox)
	exStyle := uintptr(wsExAppWindow | wsExDlgFrame)
	// Crisp at any scale: the process says it draws for the system's
	// DPI (Windows would otherwise stretch a bitmap of it, blurred), and
	// the layout is scaled to it; the message font already is.
	procSetProcessDPIAwar.Call()
	px := scaler()
	r := rect{0, 0, px(clientW), px(clientH)}
	procAdjustWindowRect.Call(uintptr(unsafe.Pointer(&r)), style, 0, exStyle)
	width, height := r.right-r.left, r.bottom-r.top
	sw, _, _ := procGetSystemMetrics.Call(smCxScreen)
	sh, _, _ := procGetSystemMetrics.Call(smCyScreen)
	x, y := (int32(sw)-width)/2, (int32(sh)-height)/3
	hwnd, _, err := procCreateWindowExW.Call(exStyle, uintptr(unsafe.Pointer(className)), uintptr(unsafe.Pointer(utf16(Title))), style,
		uintptr(x), uintptr(y), uintptr(width), uintptr(height), 0, 0, inst, 0)
	if hwnd == 0 {
		if err == windows.ERROR_SUCCESS {
			// Wine without a display says nothing more.
			return errors.New("desktop: CreateWindowEx failed: no desktop to show a window on")
		}
		return fmt.Errorf("desktop: CreateWindowEx: %w", err)
	}
	w.hwnd = windows.HWND(hwnd)
	windowsMu.Lock()
	windowsByHandle[w.hwnd] = w
	windowsMu.Unlock()
	font, made := messageFont()
	if made {
		w.font = font
	}
	child := func(class string, text string, style uintptr, x, y, cx, cy int32, id uintptr) (windows.HWND, error) {
		h, _, err := procCreateWindowExW.Call(0, uintptr(unsafe.Pointer(utf16(class))), uintptr(unsafe.Pointer(utf16(text))), wsChild|wsVisible|style,
			uintptr(px(x)), uintptr(px(y)), uintptr(px(cx)), uintptr(px(cy)), hwnd, id, inst, 0)
		if h == 0 {
			return 0, fmt.Errorf("desktop: creating the %s control: %w", class, err)
		}
		procSendMessageW.Call(h, wmSetFont, font, 0)
		return windows.HWND(h), nil
	}
	var errs [4]error
	w.text, errs[0] = child("STATIC", "", ssEndEllipsis|ssNoPrefix, margin, margin, controls, lineH, 0)
	w.bar, errs[1] = child("msctls_progress32", "", 0, margin, margin+lineH+6, controls, barH, 0)
	w.detail, errs[2] = child("STATIC", "", ssEndEllipsis|ssNoPrefix, margin, margin+lineH+6+barH+8, controls, lineH, 0)
	w.button, errs[3] = child("BUTTON", "Cancel", wsTabStop|bsDefPush, clientW-margin-buttonW, clientH-margin-buttonH, buttonW, buttonH, idCancel)
	if err := errors.Join(errs[:]...); err != nil {
		procDestroyWindow.Call(hwnd)
		return err
	}
	procSendMessageW.Call(uintptr(w.bar), pbmSetRange32, 0, 100)
	if r, _, err := procSetTimer.Call(hwnd, timerID, uintptr(redraw/time.Millisecond), 0); r == 0 {
		procDestroyWindow.Call(hwnd)
		return fmt.Errorf("desktop: SetTimer: %w", err)
	}
	return nil
}

// scaler returns the function that scales a length in pixels at 96 DPI to
// the screen's DPI.
func scaler() func(int32) int32 {
	const logPixelsY = 90
	dpi := int32(96)
	if dc, _, _ := procGetDC.Call(0); dc != 0 {
		if d, _, _ := procGetDeviceCaps.Call(dc, logPixelsY); d >= 96 && d <= 960 {
			dpi = int32(d)
		}
		procReleaseDC.Call(0, dc)
	}
	return func(n int32) int32 { return (n*dpi + 48) / 96 }
}

// logFont is LOGFONTW.
type logFont struct {
	height, width, escapement, orientation, weight int32
	italic, underline, strikeOut, charSet          byte
	outPrecision, clipPrecision, quality, pitch    byte
	faceName                                       [32]uint16
}

// nonClientMetrics is NONCLIENTMETRICSW.
type nonClientMetrics struct {
	size                                                           uint32
	borderWidth, scrollWidth, scrollHeight, captionWidth, captHght int32
	captionFont                                                    logFont
	smCaptionWidth, smCaptionHeight                                int32
	smCaptionFont                                                  logFont
	menuWidth, menuHeight                                          int32
	menuFont, statusFont, messageFont                              logFont
	paddedBorderWidth                                              int32
}

const spiGetNonClientMetrics = 0x0029

// messageFont is the font of message boxes (Segoe UI 9 on Windows 10 and
// 11), which dialogs use, made for the window (made: the window deletes
// it); DEFAULT_GUI_FONT, an older stock one, if it cannot be had.
func messageFont() (font uintptr, made bool) {
	var m nonClientMetrics
	m.size = uint32(unsafe.Sizeof(m))
	if r, _, _ := procSystemParamsInfoW.Call(spiGetNonClientMetrics, uintptr(m.size), uintptr(unsafe.Pointer(&m)), 0); r != 0 {
		if f, _, _ := procCreateFontIndirW.Call(uintptr(unsafe.Pointer(&m.messageFont))); f != 0 {
			return f, true
		}
	}
	f, _, _ := procGetStockObject.Call(defaultGUIFont)
	return f, false
}

// utf16 is s as a UTF-16 string for a call; s holds no NUL. The caller
// converts it to a uintptr in the call's own expression, so that the
// buffer is kept until the call returns (the rule of unsafe.Pointer).
func utf16(s string) *uint16 {
	p, err := windows.UTF16PtrFromString(s)
	if err != nil {
		p, _ = windows.UTF16PtrFromString("?")
	}
	return p
}

// wndProc is the window procedure of every progress window.
func wndProc(hwnd windows.HWND, m uint32, wParam, lParam uintptr) uintptr {
	windowsMu.Lock()
	w := windowsByHandle[hwnd]
	windowsMu.Unlock()
	if w != nil {
		switch m {
		case wmTimer:
			if wParam == askTimerID {
				// A question unanswered in time: No.
				procKillTimer.Call(uintptr(hwnd), askTimerID)
				if box, _, _ := procGetLastActPopup.Call(uintptr(hwnd)); box != 0 && box != uintptr(hwnd) {
					procEndDialog.Call(box, idNo)
				}
				return 0
			}
			w.draw()
			return 0
		case wmCommand:
			if wParam&0xffff == idCancel {
				w.cancel()
			}
			return 0
		case wmClose: // the close box, Alt+F4: the user's Cancel
			w.cancel()
			return 0
		case wmRun:
			w.runQueue()
			return 0
		case wmQuit:
			procDestroyWindow.Call(uintptr(hwnd))
			return 0
		case wmDestroy:
			windowsMu.Lock()
			delete(windowsByHandle, hwnd)
			windowsMu.Unlock()
			if w.font != 0 { // its controls are destroyed after it, and draw no more
				procDeleteObject.Call(w.font)
				w.font = 0
			}
			procPostQuitMessage.Call(0)
			return 0
		}
	}
	r, _, _ := procDefWindowProcW.Call(uintptr(hwnd), uintptr(m), wParam, lParam)
	return r
}

// cancel is the user's Cancel, on the window's thread.
func (w *native) cancel() {
	w.mu.Lock()
	first := !w.cancelled && !w.closing
	w.cancelled = true
	w.mu.Unlock()
	if !first {
		return
	}
	procEnableWindow.Call(uintptr(w.button), 0)
	w.draw()
	if w.onCancel != nil {
		go w.onCancel()
	}
}

// draw shows the window once showAfter has passed, and what changed in
// the state; on the window's thread.
func (w *native) draw() {
	w.mu.Lock()
	s := w.state
	if w.cancelled {
		s.Text = CancellingText
	}
	w.mu.Unlock()
	if !w.shown && time.Since(w.opened) >= showAfter {
		w.show()
	}
	if s.Text != w.drawn.Text {
		procSetWindowTextW.Call(uintptr(w.text), uintptr(unsafe.Pointer(utf16(s.Text))))
	}
	if s.Detail != w.drawn.Detail {
		procSetWindowTextW.Call(uintptr(w.detail), uintptr(unsafe.Pointer(utf16(s.Detail))))
	}
	if p := clampPercent(s.Percent); p != w.drawn.Percent {
		procSendMessageW.Call(uintptr(w.bar), pbmSetPos, uintptr(p), 0)
		s.Percent = p
	}
	w.drawn = s
}

// show shows the window in front, the focus on Cancel (so that Escape,
// Enter and Space cancel).
func (w *native) show() {
	w.shown = true
	procShowWindow.Call(uintptr(w.hwnd), swShowNormal)
	procSetForegroundWnd.Call(uintptr(w.hwnd))
	procSetFocus.Call(uintptr(w.button))
}

func (w *native) Show(s State) {
	w.mu.Lock()
	w.state = s
	w.mu.Unlock()
}

// call runs f on the window's thread and waits for it; ErrClosed if the
// window is gone first.
func (w *native) call(f func()) error {
	ran := make(chan struct{})
	w.mu.Lock()
	w.queue = append(w.queue, func() { f(); close(ran) })
	w.mu.Unlock()
	if r, _, _ := procPostMessageW.Call(uintptr(w.hwnd), wmRun, 0, 0); r == 0 {
		return ErrClosed
	}
	select {
	case <-ran:
		return nil
	case <-w.done:
		return ErrClosed
	}
}

// runQueue runs the calls queued for the window's thread.
func (w *native) runQueue() {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, f := range q {
		f()
	}
}

// messageBox shows a message box owned by the window, which it shows
// first: a box owned by a hidden window has no place in the task bar and
// may open behind other windows.
// A timeout other than 0 closes it when it has passed, with no answer.
func (w *native) messageBox(text, title string, flags uintptr, timeout time.Duration) int {
	if !w.shown {
		w.show()
		w.draw()
	}
	t, err := windows.UTF16PtrFromString(text)
	if err != nil {
		t, _ = windows.UTF16PtrFromString(fmt.Sprintf("%q", text))
	}
	c, _ := windows.UTF16PtrFromString(title)
	if timeout > 0 {
		// The box's modal loop dispatches the window's WM_TIMER: at
		// askTimerID, wndProc ends the box (MessageBoxTimeoutW would
		// too, but is undocumented, and Wine ignores its timeout).
		procSetTimer.Call(uintptr(w.hwnd), askTimerID, uintptr(timeout/time.Millisecond), 0)
		defer procKillTimer.Call(uintptr(w.hwnd), askTimerID)
	}
	r, _ := windows.MessageBox(w.hwnd, t, c, uint32(flags|mbSetForegrnd))
	return int(r)
}

// Ask asks in a Yes/No box, which answers No by itself after askTimeout
// (a scheduled task may show it where nobody sits); the question says so.
func (w *native) Ask(question string) (bool, error) {
	var r int
	q := question + "\n\n" + timeoutNote()
	if err := w.call(func() { r = w.messageBox(q, QuestionTitle, mbYesNo|mbIconQuestion, askTimeout) }); err != nil {
		return false, err
	}
	return r == idYes, nil
}

func (w *native) Error(message string) error {
	return w.call(func() { w.messageBox(message, ErrorTitle, mbOK|mbIconError, 0) })
}

func (w *native) Close() error {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	procPostMessageW.Call(uintptr(w.hwnd), wmQuit, 0, 0)
	<-w.done
	return nil
}

// Interactive says whether the process can show windows to a user: its
// window station is visible (not a service's, not a scheduled task's run
// whether or not the user is logged on).
func Interactive() bool {
	ws, err := getProcessWindowStation()
	if err != nil {
		return false
	}
	// USEROBJECTFLAGS
	var flags struct {
		inherit, reserved int32
		flags             uint32
	}
	var n uint32
	if err := getUserObjectInformation(ws, uoiFlags, unsafe.Pointer(&flags), uint32(unsafe.Sizeof(flags)), &n); err != nil {
		return false
	}
	return flags.flags&wsfVisible != 0
}

// ConsoleBuild says whether this is the console build, smartclient.exe,
// rather than smartclientw.exe, the windowsgui one. It is told by the
// subsystem the running program was linked for (the PE header's
// Subsystem), not by whether the process has a console: one started with
// CREATE_NO_WINDOW or DETACHED_PROCESS (by an agent, or a launcher that
// captures its output) has none, and is still the console build its
// caller meant.
func ConsoleBuild() bool {
	return subsystem() != imageSubsystemWindowsGUI
}

// imageSubsystemWindowsGUI is IMAGE_SUBSYSTEM_WINDOWS_GUI.
const imageSubsystemWindowsGUI = 2

// subsystem is the Subsystem field of the running program's PE header,
// read from its file once; 0 if it cannot be read.
var subsystem = sync.OnceValue(func() uint16 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	f, err := pe.Open(exe)
	if err != nil {
		return 0
	}
	defer f.Close()
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		return h.Subsystem
	case *pe.OptionalHeader32:
		return h.Subsystem
	}
	return 0
})

const (
	uoiFlags   = 1
	wsfVisible = 1
)

var (
	procGetProcessWindowStation  = user32.NewProc("GetProcessWindowStation")
	procGetUserObjectInformation = user32.NewProc("GetUserObjectInformationW")
)

func getProcessWindowStation() (windows.Handle, error) {
	h, _, err := procGetProcessWindowStation.Call()
	if h == 0 {
		return 0, err
	}
	return windows.Handle(h), nil
}

func getUserObjectInformation(h windows.Handle, index int, info unsafe.Pointer, size uint32, needed *uint32) error {
	r, _, err := procGetUserObjectInformation.Call(uintptr(h), uintptr(index), uintptr(info), uintptr(size), uintptr(unsafe.Pointer(needed)))
	if r == 0 {
		return err
	}
	return nil
}

// ownGroup is a zenity matter: nothing on Windows.
func ownGroup(*exec.Cmd) {}

// killGroup kills a started cmd.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

// Alert shows message in a message box of its own, titled ErrorTitle,
// and returns once the user has closed it: for a failure that comes
// before a progress window or after it. zenityPath is for other systems.
func Alert(zenityPath, message string) error {
	t, err := windows.UTF16PtrFromString(message)
	if err != nil {
		t, _ = windows.UTF16PtrFromString(fmt.Sprintf("%q", message))
	}
	c, _ := windows.UTF16PtrFromString(ErrorTitle)
	if _, err := windows.MessageBox(0, t, c, mbOK|mbIconError|mbSetForegrnd); err != nil {
		return fmt.Errorf("desktop: MessageBox: %w", err)
	}
	return nil
}
