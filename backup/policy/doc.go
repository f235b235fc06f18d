// Package policy holds backup's pure rules: which backup the schedule
// asks for (NextDue), which chains retention lets go (Expired), what a
// chain is and where the next backup continues it (Chain, Head,
// Reference, ChainBreak), and whether incrementals need the backup slot
// (WALSlot). It reads catalog records and the clock it is given and
// touches no disk, network or process, so that plan can decide from it
// without importing the package that streams, stores and restores
// backups (package backup, which uses it too).
package policy
