package smartclient

import "golang.org/x/sys/windows"

// lostErrnos are Winsock's words for a connection the peer reset or the
// network aborted: Windows does not say ECONNRESET or EPIPE.
var lostErrnos = []error{windows.WSAECONNRESET, windows.WSAECONNABORTED, windows.WSAESHUTDOWN, windows.ERROR_NETNAME_DELETED}
