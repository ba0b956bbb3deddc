package smartclient

// SetWriteFault lets the black-box tests make a staged write fail; see
// writeFault. It returns a function that restores the previous hook.
func SetWriteFault(f func(name string, off int64, n int) (int, error)) func() {
	saved := writeFault
	writeFault = f
	return func() { writeFault = saved }
}
