// Package bytesize formats byte counts for people. Plans, progress lines,
// status and backup lists all print sizes; they share one spelling so a
// number read in a plan can be found again in the backup list.
package bytesize

import "fmt"

// Format writes n in binary units with one decimal: "512 B", "1.5 KiB",
// "16.0 MiB". Counts under 1 KiB (and negative ones) stay whole bytes.
func Format(n int64) string {
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
