/**
 * A case's signed outcome PDF in a JupyterLab tab.
 *
 * The PDF is fetched once through the desk (so a refusal can be shown as a
 * message rather than as JSON in a frame) and shown from an object URL by the
 * browser's own PDF viewer; the URL is revoked when the tab closes.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

class PdfFrame extends Widget {
  constructor(blob: Blob) {
    super();
    this.addClass('cpms-outcome-pdf');
    this._url = URL.createObjectURL(blob);
    const frame = document.createElement('iframe');
    frame.src = this._url;
    frame.title = 'Outcome';
    this.node.appendChild(frame);
  }

  dispose(): void {
    URL.revokeObjectURL(this._url);
    super.dispose();
  }

  private readonly _url: string;
}

export function outcomeTab(caseId: string, blob: Blob): MainAreaWidget<PdfFrame> {
  const widget = new MainAreaWidget({ content: new PdfFrame(blob) });
  widget.id = `cpms-outcome-${caseId}`;
  widget.title.label = 'Outcome';
  widget.title.caption = `Signed outcome of case ${caseId}`;
  widget.title.closable = true;
  return widget;
}
