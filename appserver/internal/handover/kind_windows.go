package handover

// kind names the services of this system's manager.
const kind = "Windows service"
