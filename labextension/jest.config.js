// The tested modules (format, model) are kept free of JupyterLab imports, so plain ts-jest works
// without transforming JupyterLab's ES modules.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  }
};
