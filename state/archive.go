package state

import "time"

// ArchiveStatus is the continuous WAL archive receiver's position, as it
// writes it into the repository (walarchive.StatusKey), at most every
// second while it moves and every few seconds while idle.
type ArchiveStatus struct {
	// Timeline and Flushed: the archive holds every byte of WAL up to
	// Flushed on Timeline durably (complete segments and the partial one).
	Timeline int `json:"timeline"`
	Flushed  LSN `json:"flushed_lsn"`
	// FlushedAt is when Flushed became durable; WrittenAt is the
	// receiver's last write of this status (it rewrites it while idle
	// too, so an old WrittenAt means no receiver runs).
	FlushedAt time.Time `json:"flushed_at"`
	WrittenAt time.Time `json:"written_at"`
	// Node is the server the receiver streams from.
	Node        string `json:"node,omitempty"`
	SystemID    string `json:"system_id,omitempty"`
	SegmentSize int    `json:"segment_size"`
}

// SegmentRun is a run of consecutive complete segments of one timeline
// in the archive, by their file names.
type SegmentRun struct {
	Timeline int    `json:"timeline"`
	First    string `json:"first"`
	Last     string `json:"last"`
}

// Archive is what the repository holds of the continuous WAL archive:
// nil when the backup block declares none and the repository holds none.
type Archive struct {
	Status *ArchiveStatus `json:"status,omitempty"`
	// Runs are the complete segments, per timeline, in runs without a gap.
	Runs []SegmentRun `json:"runs,omitempty"`
	// Partials are the segments being written (normally one).
	Partials []string `json:"partials,omitempty"`
	// History is the newest timeline's history as the archive holds it
	// (HistoryTimeline's file): where each ancestor timeline ended.
	HistoryTimeline int              `json:"history_timeline,omitempty"`
	History         []TimelineSwitch `json:"history,omitempty"`
	Segments        int              `json:"segments"`
	Error           string           `json:"error,omitempty"`
}
