package smartclient

import (
	"fmt"
)

// Progress receives the progress of a download.
type Progress interface {
	Start(files int, bytes int64)
	Add(bytes int64)
	FileDone()
	Finish()
}

type nopProgress struct{}

func (nopProgress) Start(int, int64) {}
func (nopProgress) Add(int64)        {}
func (nopProgress) FileDone()        {}
func (nopProgress) Finish()          {}

// humanBytes is HumanBytes, for the library's own messages.
var humanBytes = HumanBytes

// HumanBytes formats n in binary units, as file managers show sizes.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
