//! Player simulator: many ABR players against a live HLS URL, or offline over network
//! traces, measuring quality of experience. Filled in by the player-simulator issue.
