import { describeFailure, notLoadedMessage } from '../src/unavailable';
import { notLoaded, REASON } from './fixtures';

describe('describeFailure', () => {
  it('passes on the cause and the fix of an extension that did not load', () => {
    const failure = notLoaded();
    expect(failure.message).toBe(REASON);
    expect(failure.unavailable).toBe(true);
  });

  it('says that a bare 404 means the extension is not loaded, and where to find why', () => {
    const failure = describeFailure('/a/torchlab/api/metrics', 404, 'Not Found', '<html>…');
    expect(failure.unavailable).toBe(true);
    expect(failure.message).toBe(notLoadedMessage('/a/torchlab/api/metrics'));
    expect(failure.message).toContain(
      '/a/torchlab/api/metrics was not found: the jupyter_torchlab server extension is not ' +
        'loaded in this Jupyter server.'
    );
    expect(failure.message).toContain('The server log says why');
    expect(failure.message).toContain('`jupyter torchlab doctor`');
    // it is enabled but failed, as often as it is disabled: "enable it" would mislead
    expect(failure.message).not.toContain('enable');
  });

  it("keeps our handlers' own messages, which are not about loading", () => {
    const failure = describeFailure('/torchlab/api/tutorial', 404, 'Not Found', {
      message: 'No such directory: nb'
    });
    expect(failure).toMatchObject({ message: 'No such directory: nb', unavailable: false });
    expect(describeFailure('/x', 500, 'Internal Server Error', '')).toMatchObject({
      message: '500 Internal Server Error',
      unavailable: false
    });
  });
});
