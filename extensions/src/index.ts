/**
 * @cpms/lab: the CPMS case desk in JupyterLab 4 and Notebook 7.
 *
 * One plugin adds the "Cases" sidebar (cases, filters, notifications), the
 * commands behind it — New case, Open case in notebook, Open in review app,
 * Open outcome — a launcher item and a palette entry for New case, and
 * context-menu items on the sidebar's cases. Everything goes through the
 * server extension cpms_lab; the front end never holds a store token.
 *
 * A notification opens where it is dealt with: a request for more information
 * the case's notebook (the owner answers there), a signed outcome its PDF, an
 * invitation the review app's inbox, other panel work the case's workspace;
 * opening it marks it read. The review app's addresses come from the server
 * extension (a case's `review_url`, a notification's `link`), never built here.
 *
 * In Notebook 7 the file tree page has no side bar: there the desk is a
 * "Cases" tab next to "Files" and "Running"; in its notebook and editor pages
 * it is in the left side bar (View > Left Sidebar).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { ILauncher } from '@jupyterlab/launcher';
import { NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { INotebookTree } from '@jupyter-notebook/tree';

import { caseNotebook, INotification, markRead, newCaseNotebook, outcomePdf } from './api';
import { outcomeTab } from './pdf';
import { CasesPanel, describe } from './sidebar';

const ID = '@cpms/lab:plugin';

export namespace CommandIDs {
  export const newCase = 'cpms:new-case';
  export const openCaseNotebook = 'cpms:open-case-notebook';
  export const openReviewApp = 'cpms:open-review-app';
  export const openOutcome = 'cpms:open-outcome';
  export const showDesk = 'cpms:show-cases';
}

/** how long after a cell ran the desk looks at the cases again */
const AFTER_RUN_MS = 2000;

const caseIcon = new LabIcon({
  name: 'cpms:case',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
    '<path class="jp-icon3" fill="#616161" d="M9 3h6a2 2 0 0 1 2 2v1h3a2 2 0 0 1 2 2v10a2 ' +
    '2 0 0 1-2 2H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h3V5a2 2 0 0 1 2-2zm0 3h6V5H9v1zm2 4v3H8v2h3v3h2' +
    'v-3h3v-2h-3v-3h-2z"/></svg>'
});

/**
 * Where "Open in review app" goes: the URL given (a notification's link), else the
 * review workspace the server extension names for the case (one place builds it).
 */
function reviewUrlOf(args: Record<string, unknown>, panel: CasesPanel): string | null {
  if (typeof args.url === 'string' && args.url) {
    return args.url;
  }
  const caseId = caseIdOf(args, panel);
  return panel.cases.find(c => c.id === caseId)?.review_url ?? null;
}

function caseIdOf(args: Record<string, unknown>, panel: CasesPanel): string | null {
  const given = args.caseId;
  return typeof given === 'string' && given ? given : panel.contextCaseId;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: ID,
  description: 'The CPMS case desk: cases, panel notifications and outcomes',
  autoStart: true,
  optional: [ILauncher, ICommandPalette, ILayoutRestorer, INotebookTree],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    notebookTree: INotebookTree | null
  ) => {
    const { commands, shell } = app;
    const open = (path: string) => commands.execute('docmanager:open', { path });
    const fail = (title: string) => (reason: unknown) =>
      void showErrorMessage(title, describe(reason));

    const panel = new CasesPanel({
      newCase: () => void commands.execute(CommandIDs.newCase),
      openCaseNotebook: caseId =>
        void commands.execute(CommandIDs.openCaseNotebook, { caseId }),
      openReviewApp: caseId => void commands.execute(CommandIDs.openReviewApp, { caseId }),
      openOutcome: caseId => void commands.execute(CommandIDs.openOutcome, { caseId }),
      openNotification: (note: INotification) => {
        if (!note.read) {
          markRead(note.id)
            .then(() => panel.refresh())
            .catch(() => undefined); // still unread: it stays marked so
        }
        // the request is answered in the case's notebook, the outcome read as its PDF;
        // an invitation is accepted in the review app's inbox, the rest is panel work there
        if (note.kind === 'information-request' && note.case_id) {
          void commands.execute(CommandIDs.openCaseNotebook, { caseId: note.case_id });
        } else if (note.kind === 'outcome-signed' && note.case_id) {
          void commands.execute(CommandIDs.openOutcome, { caseId: note.case_id });
        } else {
          void commands.execute(CommandIDs.openReviewApp, { url: note.link });
        }
      }
    });
    panel.title.icon = caseIcon;
    panel.title.label = 'Cases';

    commands.addCommand(CommandIDs.newCase, {
      label: 'New case',
      caption: 'A new notebook from the submission template, connected to the case store',
      icon: args => (args.isLauncher ? caseIcon : undefined),
      execute: async () => {
        try {
          const { path } = await newCaseNotebook();
          await open(path);
        } catch (reason) {
          fail('Could not start a new case')(reason);
        }
      }
    });
    commands.addCommand(CommandIDs.openCaseNotebook, {
      label: 'Open case in notebook',
      execute: async args => {
        const caseId = caseIdOf(args, panel);
        if (!caseId) {
          return;
        }
        try {
          const { path } = await caseNotebook(caseId);
          await open(path);
        } catch (reason) {
          fail('Could not open the case')(reason);
        }
      }
    });
    commands.addCommand(CommandIDs.openReviewApp, {
      label: 'Open in review app',
      isEnabled: () => PageConfig.getOption('hubPrefix') !== '',
      execute: args => {
        const url = reviewUrlOf(args, panel);
        if (url) {
          window.open(url, '_blank', 'noopener');
        }
      }
    });
    commands.addCommand(CommandIDs.openOutcome, {
      label: 'Open outcome (PDF)',
      execute: async args => {
        const caseId = caseIdOf(args, panel);
        if (!caseId) {
          return;
        }
        try {
          const widget = outcomeTab(caseId, await outcomePdf(caseId));
          shell.add(widget, 'main');
          shell.activateById(widget.id);
        } catch (reason) {
          fail('No outcome to show')(reason);
        }
      }
    });
    commands.addCommand(CommandIDs.showDesk, {
      label: 'Show CPMS cases',
      execute: () => {
        if (notebookTree) {
          notebookTree.currentWidget = panel;
        } else {
          shell.activateById(panel.id);
        }
      }
    });

    // a cell that ran may have changed a case (the form saved it, a script submitted it):
    // look again shortly after, rather than polling the store (each listing is audited) often
    let pending: number | undefined;
    NotebookActions.executed.connect(() => {
      window.clearTimeout(pending);
      pending = window.setTimeout(() => {
        if (panel.isVisible) {
          panel.refresh().catch(() => undefined);
        }
      }, AFTER_RUN_MS);
    });

    if (notebookTree) {
      notebookTree.addWidget(panel);
    } else {
      shell.add(panel, 'left', { rank: 150 });
      if (restorer) {
        restorer.add(panel, panel.id);
      }
    }
    if (launcher) {
      launcher.add({ command: CommandIDs.newCase, category: 'CPMS', rank: 0 });
    }
    if (palette) {
      for (const command of [CommandIDs.newCase, CommandIDs.showDesk]) {
        palette.addItem({ command, category: 'CPMS' });
      }
    }
    let rank = 0;
    for (const command of [
      CommandIDs.openCaseNotebook,
      CommandIDs.openReviewApp,
      CommandIDs.openOutcome
    ]) {
      app.contextMenu.addItem({ command, selector: '.cpms-case-item', rank: rank++ });
    }
  }
};

export default plugin;
