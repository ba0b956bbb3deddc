// Package releasecheck holds the rules every path, name, mode, size and
// link of a release must meet so that all three client OSes (Windows,
// macOS, Linux) can hold it: no name that one of them could not create or
// would take for something else (a device, a drive, another file under
// case folding or Unicode normalization), no path that leaves the install
// folder or touches the client's bookkeeping, no mode but permission
// bits, no file over MaxFileSize, no link that is absolute or leads out.
//
// It is the one source of these rules: the client (smartclient's
// manifest package) applies them to every manifest it reads, and the
// server to every update folder it indexes and every release it is given
// to publish, so that the two can never disagree and a release every
// client would refuse is refused where it is made, naming every offending
// path, rather than at 500 workstations.
//
// Check takes a whole release and reports every problem; CheckPath,
// CheckMode, CheckSize, FoldKey, SameFileWhy and CheckLinks are the rules
// one at a time, for a caller that reads a release entry by entry.
//
// It imports only the standard library and golang.org/x/text, so that both
// sides can use it (it knows neither syncproto nor the client; its limits
// equal syncproto's, which the client's manifest package asserts when it
// is compiled).
package releasecheck
