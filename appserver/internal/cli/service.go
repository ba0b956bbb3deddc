package cli

import (
	"fmt"
	"strings"

	"github.com/erpupdate/smartsync/appserver"
	"github.com/erpupdate/smartsync/appserver/internal/service"
	"github.com/erpupdate/smartsync/internal/cmdline"
	"github.com/spf13/cobra"
)

// serviceCommand installs and controls the server as an operating system
// service (systemd, Windows service, launchd).
func (e *env) serviceCommand() *cobra.Command {
	var o service.Options
	var dryRun bool
	svc := &cobra.Command{
		Use:   "service install|uninstall|start|stop|status --config AppServer.ini [--state DIR] [--name NAME] [--dry-run]",
		Short: "Install, remove, start, stop the server as a service (systemd, Windows service, launchd)",
		Long: `service installs the server as the system's service, running this program
with --config (and --state), and controls it through the service manager:

  install    write and enable the service (on Linux the systemd unit
             /etc/systemd/system/NAME.service, Type=notify, restarted on
             failure); --dry-run prints it instead
  uninstall  disable and remove it
  start      start it; on systemd this returns once the server answers
  stop       stop it (the server drains its sessions first)
  status     say whether it is installed and running

Installing and controlling a system service needs root (Administrator on
Windows). A self-update of a server run as a service stops and starts it
through the service manager.`,
		Example: `  appserver service install --config /srv/erp/AppServer.ini --dry-run
  sudo appserver service install --config /srv/erp/AppServer.ini && sudo appserver service start --config /srv/erp/AppServer.ini`,
	}
	fl := svc.PersistentFlags()
	fl.StringVar(&o.Config, "config", "AppServer.ini", "AppServer.ini the service runs the server with")
	fl.StringVar(&o.State, "state", "", "the server's state folder; default: appserver-state beside the configuration")
	fl.StringVar(&o.Name, "name", service.DefaultName, "the service's name (the unit NAME.service on systemd)")
	sub := func(name, short string, run func() (string, error)) *cobra.Command {
		return &cobra.Command{
			Use:   name + " --config AppServer.ini [--name NAME]",
			Short: short,
			Args:  exactArgs(0, "no arguments"),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := service.CheckName(o.Name); err != nil {
					return usagef("%w", err)
				}
				msg, err := run()
				if err != nil {
					return ran(err)
				}
				if msg != "" {
					fmt.Fprintln(e.stdout, strings.TrimSuffix(msg, "\n"))
				}
				return nil
			},
		}
	}
	install := sub("install", "Install the service (--dry-run: print what would be installed)", func() (string, error) {
		// A service that cannot start is no use: the configuration is
		// checked first.
		if _, err := appserver.LoadConfig(o.Config); err != nil {
			return "", fmt.Errorf("%w: %w", appserver.ErrUsage, err)
		}
		if dryRun {
			return service.DryRun(o)
		}
		where, err := service.Install(o)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("installed %s; start it with: appserver service start --config %s --name %s", where, o.Config, o.Name), nil
	})
	install.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be installed (the systemd unit on Linux) and install nothing")
	uninstall := sub("uninstall", "Disable and remove the service", func() (string, error) {
		return "", service.Uninstall(o)
	})
	start := sub("start", "Start the service through the service manager", func() (string, error) {
		if err := service.Start(o); err != nil {
			return "", err
		}
		return o.Name + ": started", nil
	})
	stop := sub("stop", "Stop the service through the service manager", func() (string, error) {
		if err := service.Stop(o); err != nil {
			return "", err
		}
		return o.Name + ": stopped", nil
	})
	status := sub("status", "Say whether the service is installed and running", func() (string, error) {
		return service.Status(o)
	})
	svc.AddCommand(install, uninstall, start, stop, status)
	cmdline.Group(svc)
	return svc
}
