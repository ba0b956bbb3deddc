package smartclient

import "golang.org/x/sys/windows"

// lostErrnos are Winsock's words for a connection the peer reset or the
// network aborted: Windows does not say ECONNRESET or EPIPE.
var lostErrnos = []error{windows.WSAECONNRESET, windows.WSAECONNABORTED, windows.WSAESHUTDOWN, windows.ERROR_NETNAME_DELETED}

// unreachableErrnos are Winsock's words for a server that cannot be
// reached now: nothing listens, or no route leads there.
var unreachableErrnos = []error{windows.WSAECONNREFUSED, windows.WSAEHOSTUNREACH, windows.WSAENETUNREACH, windows.WSAEHOSTDOWN, windows.WSAENETDOWN, windows.WSAETIMEDOUT}
